"""Preparing ONNX graphs for the converters and runtimes, always on a private copy: old opsets
brought forward (what ONNX Runtime needs to run the reference), and exact rewrites onnx2tf needs.
The user's file is only read."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import weakref

import numpy as np

from fwconv.errors import first_line, require
from fwconv.models.onnx import _spec, default_opset, load_onnx
from fwconv.specs import TensorSpec


def constants_to_initializers(model) -> int:
    """Turn `Constant` nodes into initializers (in place); returns how many were moved.

    onnx2tf treats a Constant node's output as a graph value and fails on, e.g., a scalar
    divisor ("Output tensors of a Functional model must be the output of a TensorFlow Layer");
    the same value as an initializer converts fine.
    """
    onnx = require("onnx", "onnx")
    kept, moved = [], 0
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
            moved += 1
        else:
            kept.append(node)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(kept)
    return moved


# -- Preparing old graphs for today's runtimes ---------------------------------------------------
# ONNX Runtime 1.31 has no kernels for many opset < 7 ops ("Could not find an implementation for
# AveragePool(1)"), and onnx2tf reads old attribute forms wrongly (Pad-2's `value`). ONNX's own
# version converter brings such graphs forward; fwconv does it once, on a private copy, before
# the reference runner and onnx2tf see the graph, and records it in the manifest.
# Measured on ONNX's 117 pytorch node tests (scripts/onnx_conformance.py): a target of 7 or 9
# converted 102 correctly, 11, 13 and 17 gave 104 (Pad-11 carries Pad-2's value; Slice has steps);
# also upgrading the opset 7-12 graphs changed nothing. Only graphs ORT cannot run are upgraded:
# the reference then runs the upgraded copy, so a converter mistake would be invisible to parity.
UPGRADE_BELOW = 7  # ORT only guarantees opset >= 7
TARGET_OPSET = 13
PREPARE_STAGES = "prepare_stages"  # Artifact.extra key: stage records made before any Job existed


@dataclasses.dataclass
class PreparedOnnx:
    """An ONNX source as the runtimes will see it: the user's path, or a private upgraded copy
    (deleted with `cleanup`, or when the object it is `bind`-ed to is garbage-collected)."""

    path: str
    stage: dict | None = None  # a StageRecord's fields, for the manifest
    notes: list[str] = dataclasses.field(default_factory=list)
    _dir: tempfile.TemporaryDirectory | None = None

    def bind(self, owner) -> None:
        if self._dir is not None:
            weakref.finalize(owner, self._dir.cleanup)

    def annotate(self, artifact) -> None:
        """Point the source artifact at the copy; its notes and stage record travel with it."""
        artifact.path = self.path
        artifact.notes = artifact.notes + self.notes
        if self.stage:
            artifact.extra = {**artifact.extra, PREPARE_STAGES: [self.stage]}

    def cleanup(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()


def adopt_prepare_stages(onnx_artifact, job) -> None:
    """Stages done to the source before the job existed (prepare:opset) go first in the job's
    record, so the manifest shows them. Each ONNX-reading edge calls this."""
    from fwconv.convert.job import StageRecord

    records = [StageRecord(**r) for r in onnx_artifact.extra.get(PREPARE_STAGES, [])]
    job.stages[:0] = [r for r in records if r not in job.stages]


def prepare_onnx_source(path: str) -> PreparedOnnx:
    """Load and check the user's ONNX file (a corrupt one is exit 2). A graph older than today's
    runtimes take (opset < UPGRADE_BELOW, or IR 3) is brought forward on a private copy, which the
    reference runner and the edges read. The user's file is only read."""
    model = load_onnx(path)
    opset = default_opset(model)
    upgrade = opset is not None and opset < UPGRADE_BELOW
    if not upgrade and model.ir_version >= 4:
        return PreparedOnnx(path)
    start = time.perf_counter()
    prepared, details = modernize(model, TARGET_OPSET if upgrade else None)
    stage = {"stage": "prepare:opset", "status": "ok" if prepared is not None else "failed",
             "seconds": 0.0, "detail": "; ".join(details)}
    if prepared is None:  # the runtimes get the original graph and may still take it
        stage["seconds"] = round(time.perf_counter() - start, 4)
        return PreparedOnnx(path, stage, [f"the ONNX graph could not be brought forward: {details[-1]}"])
    folder = tempfile.TemporaryDirectory(prefix="fwconv-onnx-")
    copy = os.path.join(folder.name, os.path.basename(path) if path.endswith(".onnx") else "model.onnx")
    save_onnx(prepared, copy)
    stage["seconds"] = round(time.perf_counter() - start, 4)
    how = (f"ONNX opset {opset} upgraded to {TARGET_OPSET} with onnx.version_converter" if upgrade
           else "ONNX IR 3 updated")
    rest = "; ".join(details[1:] if upgrade else details)
    note = f"{how}{f' ({rest})' if rest else ''}, on a copy: the source file is unchanged"
    return PreparedOnnx(copy, stage, [note], folder)


def modernize(model, target: int | None) -> tuple[object | None, list[str]]:
    """(model at opset `target` (None: keep) and IR >= 4, what changed), or (None, [why not]).

    IR 3 requires every initializer to be a graph input, yet the version converter's adapters
    (Pad's pads) and onnxsim add initializers and keep IR 3, giving graphs the checker refuses.
    So the IR moves to what the opset needs, and initializers stop being listed as inputs (IR 3
    forced that listing on the exporter; fwconv never feeds them)."""
    onnx = require("onnx", "onnx")
    opset, details = default_opset(model), []
    if target is not None:
        try:
            model = onnx.version_converter.convert_version(model, target)
        except Exception as exc:  # no adapter for some op, or a graph the converter cannot read
            return None, [f"opset {opset} -> {target} failed: {first_line(exc)}"]
        details.append(f"opset {opset} -> {target}")
    else:
        model = copy_model(model)
    ir = max(model.ir_version, 4, onnx.helper.find_min_ir_version_for(list(model.opset_import)))
    if ir != model.ir_version:
        details.append(f"IR {model.ir_version} -> {ir}")
        model.ir_version = ir
    dropped = drop_initializer_inputs(model)
    details += [f"{dropped} initializers no longer listed as graph inputs"] if dropped else []
    reshaped = per_channel_prelu_slopes(model) if target is not None and opset < 7 else 0
    details += [f"{reshaped} PRelu slopes made per-channel (opset-6 semantics)"] if reshaped else []
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        return None, [f"{'; '.join(details)} gave an invalid graph: {first_line(exc)}"]
    return model, details


def copy_model(model):
    """A private copy of a ModelProto, to rewrite without touching the caller's."""
    onnx = require("onnx", "onnx")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def drop_initializer_inputs(model) -> int:
    """Remove initializers from the graph inputs (in place); returns how many. From IR 4 on, a
    listed initializer is an overridable input: runtimes and onnx2tf would treat weights as inputs."""
    init = {i.name for i in model.graph.initializer}
    kept = [v for v in model.graph.input if v.name not in init]
    dropped = len(model.graph.input) - len(kept)
    if dropped:
        del model.graph.input[:]
        model.graph.input.extend(kept)
    return dropped


def per_channel_prelu_slopes(model) -> int:
    """Opset-6 PRelu applies a 1-D slope of size C per channel (axis 1); from opset 7 a slope
    broadcasts numpy-style, against the last axis. The version converter does not adapt this,
    so reshape such slopes (initializers) to [C, 1, ...] where X has rank > 2 and C channels."""
    onnx = require("onnx", "onnx")
    shapes = _shapes(model)
    init = {i.name: i for i in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "PRelu" or len(node.input) != 2 or node.input[1] not in init:
            continue
        slope, shape = init[node.input[1]], shapes.get(node.input[0])
        if len(slope.dims) != 1 or slope.dims[0] == 1 or not shape or len(shape) <= 2 or shape[1] != slope.dims[0]:
            continue
        name = f"{slope.name}__per_channel"
        if name not in init:
            array = onnx.numpy_helper.to_array(slope).reshape([-1] + [1] * (len(shape) - 2))
            init[name] = onnx.numpy_helper.from_array(array, name)
            model.graph.initializer.append(init[name])
        node.input[1] = name
        changed += 1
    return changed


def _shapes(model) -> dict[str, list[int | None]]:
    """Tensor shapes known from the graph's inputs and shape inference."""
    return {name: spec.shape for name, spec in _value_specs(model).items()}


def _value_specs(model) -> dict[str, TensorSpec]:
    """Shape and dtype of every graph value that the graph or shape inference knows."""
    onnx = require("onnx", "onnx")
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:
        graph = model.graph
    values = list(graph.input) + list(graph.value_info) + list(graph.output)
    return {v.name: _spec(v) for v in values if v.type.tensor_type.HasField("shape")}


def save_onnx(model, path: str) -> None:
    """Save a model; one over protobuf's 2 GB limit keeps its weights in a side file."""
    onnx = require("onnx", "onnx")
    large = model.ByteSize() > 1_800_000_000
    onnx.save_model(model, path, save_as_external_data=large,
                    location=os.path.basename(path) + ".data" if large else None)


# -- Rewrites that onnx2tf needs (on its private copy only) --------------------------------------
def name_nodes(model) -> int:
    """Give every unnamed or duplicate-named node a unique name (in place); returns how many.
    onnx2tf keys its layers by node name (fwconv turns off its own renaming, which rewrites the
    file): two unnamed Reshapes overwrite each other and give a wrong model without an error."""
    seen = {n.name for n in model.graph.node if n.name}
    taken, renamed = set(), 0
    for i, node in enumerate(model.graph.node):
        if node.name and node.name not in taken:
            taken.add(node.name)
            continue
        base = f"{node.op_type}_{i}"
        name, k = base, 0
        while name in seen or name in taken:
            k += 1
            name = f"{base}_{k}"
        node.name = name
        taken.add(name)
        renamed += 1
    return renamed


def decompose_prelu(model) -> int:
    """PRelu(x, s) -> Relu(x) - s * Relu(-x) (exact, no broadcasting of its own) where onnx2tf or
    TFLite cannot take it: a per-channel slope ([C, 1, ...]: onnx2tf 1.28 fails on "Layer weight
    shape") or an input of rank > 4 (TFLite's PRELU stops at 4). A scalar or last-axis slope on
    a rank <= 4 input keeps the builtin PRelu."""
    onnx = require("onnx", "onnx")
    make = onnx.helper.make_node
    shapes = _shapes(model)
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    nodes, changed = [], 0
    for node in model.graph.node:
        if node.op_type != "PRelu" or _builtin_prelu_fits(shapes.get(node.input[0]), shapes.get(node.input[1])):
            nodes.append(node)
            continue
        (x, s), y, t = node.input, node.output[0], node.name or f"prelu{changed}"
        nodes += [make("Relu", [x], [f"{t}__pos"], name=f"{t}__relu"),
                  make("Neg", [x], [f"{t}__negx"], name=f"{t}__neg"),
                  make("Relu", [f"{t}__negx"], [f"{t}__negpart"], name=f"{t}__relu_neg"),
                  make("Mul", [f"{t}__negpart", s], [f"{t}__scaled"], name=f"{t}__mul"),
                  make("Sub", [f"{t}__pos", f"{t}__scaled"], [y], name=f"{t}__sub")]
        changed += 1
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return changed


def _builtin_prelu_fits(x_shape, slope_shape) -> bool:
    """A scalar or last-axis slope on an input of known rank <= 4: onnx2tf's PRelu works."""
    return bool(x_shape) and len(x_shape) <= 4 and slope_shape is not None and len(slope_shape) <= 1


def split_strided_dilated_convs(model) -> int:
    """Conv with strides > 1 and dilations > 1 -> Conv with stride 1, then a strided Slice: the
    same values (every s-th output of the stride-1 conv), which TensorFlow can build; its
    convolution refuses strides and dilations together, so onnx2tf fails on such a Conv.
    Needs Slice's `steps` (opset >= 10); explicit pads only (SAME auto_pad depends on stride)."""
    onnx = require("onnx", "onnx")
    if (default_opset(model) or 0) < 10:
        return 0
    nodes, changed = [], 0
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        strides, dilations = list(attrs.get("strides") or []), list(attrs.get("dilations") or [])
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if (node.op_type != "Conv" or max(strides or [1]) == 1 or max(dilations or [1]) == 1
                or auto_pad not in (b"NOTSET", b"VALID")):
            nodes.append(node)
            continue
        tag, out = node.name or f"conv{changed}", node.output[0]
        for a in node.attribute:
            if a.name == "strides":
                a.ClearField("ints")
                a.ints.extend([1] * len(strides))
        node.output[0] = f"{tag}__dense"
        axes = list(range(2, 2 + len(strides)))
        consts = {"starts": [0] * len(axes), "ends": [np.iinfo(np.int64).max] * len(axes), "axes": axes,
                  "steps": strides}
        for key, values in consts.items():
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(values, np.int64), f"{tag}__{key}"))
        nodes += [node, onnx.helper.make_node("Slice", [f"{tag}__dense"] + [f"{tag}__{k}" for k in consts], [out],
                                              name=f"{tag}__stride")]
        changed += 1
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return changed


def undilate_max_pools(model) -> int:
    """MaxPool with dilation d and a stride that is a multiple m of it -> MaxPool(kernel 1,
    stride d), which takes every d-th input element, then MaxPool(the kernel, stride m, the pads
    over those taps): the same windows, exactly. onnx2tf has no builtin for a dilated max-pool:
    FlexDilation2D in 2-D, and in 1-D a 100 MB gather-based model that takes a minute to convert.
    Needs static spatial sizes and leading pads that are multiples of d; no ceil_mode/Indices."""
    onnx = require("onnx", "onnx")
    shapes = _shapes(model)
    nodes, changed = [], 0
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        pads = _tap_pads(node, attrs, shapes.get(node.input[0]) if node.input else None)
        if pads is None:
            nodes.append(node)
            continue
        tag, dil = node.name or f"maxpool{changed}", list(attrs["dilations"])
        nodes += [onnx.helper.make_node("MaxPool", [node.input[0]], [f"{tag}__taps"], name=f"{tag}__taps",
                                        kernel_shape=[1] * len(dil), strides=dil),
                  onnx.helper.make_node("MaxPool", [f"{tag}__taps"], list(node.output), name=f"{tag}__pool",
                                        kernel_shape=list(attrs["kernel_shape"]), pads=pads,
                                        strides=[s // d for s, d in zip(attrs["strides"], dil)])]
        changed += 1
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return changed


def _tap_pads(node, attrs: dict, shape) -> list[int] | None:
    """The pads of the undilated pool over the taps, or None when the rewrite does not apply.
    Leading pads a*d become a taps; trailing pads become ceil((L + pe)/d) - ceil(L/d) taps."""
    dil, strides = list(attrs.get("dilations") or []), list(attrs.get("strides") or [])
    n = len(dil)
    if (node.op_type != "MaxPool" or max(dil or [1]) == 1 or len(strides) != n or len(node.output) > 1
            or any(s % d for s, d in zip(strides, dil)) or attrs.get("ceil_mode", 0)
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
            or not shape or len(shape) != n + 2 or any(not isinstance(v, int) for v in shape[2:])):
        return None
    pads = list(attrs.get("pads") or [0] * 2 * n) if attrs.get("auto_pad", b"NOTSET") == b"NOTSET" else [0] * 2 * n
    if any(p % d for p, d in zip(pads[:n], dil)):
        return None
    ceil = lambda a, b: -(-a // b)
    return ([p // d for p, d in zip(pads[:n], dil)]
            + [ceil(size + pe, d) - ceil(size, d) for size, pe, d in zip(shape[2:], pads[n:], dil)])


def fold_col2im(model) -> int:
    """Col2Im whose blocks do not overlap (strides == block shape, no dilation, no pads: the
    `fold` of MobileViT-style patching) -> Reshape, Transpose, Reshape: the same placement of
    every value, exactly. onnx2tf builds Col2Im from three nested tf.map_fn loops run eagerly,
    and its strict mode re-runs the whole graph at every later Reshape and normalization: on
    MobileViTV2 (64x64) that alone kept onnx2tf busy for over 10 minutes."""
    onnx = require("onnx", "onnx")
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes, changed = [], 0
    for node in model.graph.node:
        fold = _plain_fold(onnx, node, consts)
        if fold is None:
            nodes.append(node)
            continue
        (h, w), (bh, bw) = fold
        tag = node.name or f"col2im{changed}"
        shapes = {"blocks": [0, -1, bh, bw, h // bh, w // bw], "image": [0, -1, h, w]}
        for key, value in shapes.items():
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(value, np.int64), f"{tag}__{key}"))
        make = onnx.helper.make_node
        nodes += [make("Reshape", [node.input[0], f"{tag}__blocks"], [f"{tag}__b"], name=f"{tag}__split"),
                  make("Transpose", [f"{tag}__b"], [f"{tag}__t"], name=f"{tag}__place", perm=[0, 1, 4, 2, 5, 3]),
                  make("Reshape", [f"{tag}__t", f"{tag}__image"], list(node.output), name=f"{tag}__join")]
        changed += 1
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return changed


def _plain_fold(onnx, node, consts: dict) -> tuple | None:
    """((H, W), (bh, bw)) of a 2-D Col2Im with non-overlapping blocks tiling the image; else None."""
    if node.op_type != "Col2Im" or len(node.input) < 3 or node.input[1] not in consts or node.input[2] not in consts:
        return None
    image, block = [int(v) for v in consts[node.input[1]]], [int(v) for v in consts[node.input[2]]]
    attrs = {a.name: list(onnx.helper.get_attribute_value(a)) for a in node.attribute}
    if (len(image) != 2 or len(block) != 2 or attrs.get("strides", [1, 1]) != block
            or any(d != 1 for d in attrs.get("dilations", [1, 1])) or any(attrs.get("pads", [0] * 4))
            or image[0] % block[0] or image[1] % block[1]):
        return None
    return tuple(image), tuple(block)
