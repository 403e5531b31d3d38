"""ONNX files: loading (a corrupt one is exit 2), I/O specs, embedding bounds, opset."""

from __future__ import annotations

import os

from fwconv.errors import InputError, first_line, require
from fwconv.specs import TensorSpec

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def load_onnx(path: str, *, check: bool = True):
    """The model with its external data; declared sizes and data locations are checked first."""
    onnx = require("onnx", "onnx")
    from fwconv.limits import check_declared

    check_declared(path, os.path.getsize(path))
    try:
        model = onnx.load(path, load_external_data=False)
        _check_external_data(model, path)
        onnx.load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
        if check:
            onnx.checker.check_model(model)
    except InputError:
        raise
    except Exception as exc:  # DecodeError, ValidationError, OSError: all mean "not a usable ONNX file"
        raise InputError(f"{path} is not a valid ONNX model: {first_line(exc)}") from exc
    return model


def _check_external_data(model, path: str) -> None:
    """Each external tensor's file lies beside the model (no absolute path, no `..`), exists, and
    holds the bytes it declares, within the size cap: checked before anything is read."""
    from fwconv.limits import check_declared

    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for tensor in model.graph.initializer:
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        entry = {e.key: e.value for e in tensor.external_data}
        target = os.path.realpath(os.path.join(folder, entry.get("location", "")))
        if os.path.isabs(entry.get("location", "")) or not target.startswith(folder + os.sep):
            raise InputError(f"{path}: tensor '{tensor.name}' points outside the model's folder ({entry.get('location')!r})")
        offset, length = int(entry.get("offset", 0) or 0), int(entry.get("length", 0) or 0)
        check_declared(f"external tensor '{tensor.name}'", length)
        if not os.path.isfile(target) or os.path.getsize(target) < offset + length:
            raise InputError(f"{path}: external data for '{tensor.name}' is missing or shorter than it declares")


def _spec(value_info) -> TensorSpec:
    ttype = value_info.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
    return TensorSpec(name=value_info.name, shape=shape, dtype=_ONNX_DTYPES.get(ttype.elem_type, str(ttype.elem_type)))


def io_specs(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (minus initializers, which old exporters list as inputs) and outputs."""
    init = {i.name for i in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in init]
    outputs = [_spec(v) for v in model.graph.output]
    return inputs, outputs


def embedding_bound(model) -> dict[str, int]:
    """For integer graph inputs that index a table (Gather on an initializer), the table size:
    token ids must stay below it. Walks through Cast nodes."""
    init = {i.name: list(i.dims) for i in model.graph.initializer}
    int_inputs = {v.name for v in model.graph.input if v.type.tensor_type.elem_type in (6, 7)}
    alias = {n: n for n in int_inputs}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input and node.input[0] in alias:
            alias[node.output[0]] = alias[node.input[0]]
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in init and node.input[1] in alias:
            name = alias[node.input[1]]
            size = init[node.input[0]][0]
            bounds[name] = min(bounds.get(name, size), size)
    return bounds


_DEFAULT_DOMAINS = ("", "ai.onnx")


def default_opset(model) -> int | None:
    """The opset of the default ONNX domain, or None if the graph does not import it."""
    versions = [o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    return versions[0] if versions else None


def input_dim_params(model) -> dict[str, list[str | None]]:
    """Each graph input's symbolic dim names ('batch', 's40'; None for a fixed or unnamed dim)."""
    return {v.name: [d.dim_param or None for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
