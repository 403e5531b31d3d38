"""ONNX -> PyTorch with onnx2torch, saved as TorchScript (`torch.jit.load`-able).

The GraphModule onnx2torch builds is wrapped so that its inputs keep the ONNX names and its
outputs come back as a dict under the ONNX output names, then traced with the job's sample
(static shapes, recurrent loops unrolled) and saved. onnx2torch's torchvision import and its
missing LSTM/GRU converters are handled in convert/onnx2torch_compat.py.
"""

from __future__ import annotations

import re

import numpy as np

from fwconv.convert.edges import Edge
from fwconv.convert.job import Artifact, Job, compose_interface
from fwconv.convert.onnx_utils import io_specs, load_onnx
from fwconv.errors import ConversionError, UnsupportedOpError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.quiet import captured_output
from fwconv.specs import identifier

TOOLS = ("onnx2torch", "torch", "onnx")


def py_name(name: str) -> str:
    return identifier(name, leading_underscore=True)


def _named_module(graph_module, in_names: list[str], out_names: list[str]):
    torch = require("torch", "torch")
    params = ", ".join(py_name(n) for n in in_names)
    namespace: dict = {}
    exec(f"def forward(self, {params}):\n    return self._named(self.inner({params}))", namespace)  # a signature with the names

    class NamedIO(torch.nn.Module):
        forward = namespace["forward"]

        def __init__(self):
            super().__init__()
            self.inner = graph_module

        def _named(self, outs):
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            return {py_name(n): o for n, o in zip(out_names, outs)}

    return NamedIO().eval()


def _feed(job: Job, prev: Artifact) -> list[np.ndarray]:
    """The sample in the ONNX model's input order and layout (the interface says how)."""
    entries = (prev.extra.get("interface") or {}).get("inputs") or [{"source": s.name, "name": s.name, "transpose": None}
                                                                      for s in prev.inputs]
    by_name = {e["name"]: e for e in entries}
    values = []
    for spec in prev.inputs:
        e = by_name.get(spec.name, {"source": spec.name, "transpose": None})
        arr = job.sample[e["source"]]
        values.append(np.ascontiguousarray(arr.transpose(e["transpose"]) if e["transpose"] else arr).astype(spec.dtype))
    return values


ONNX2TORCH_MAX_OPSET = 17  # e.g. ReduceMean-18 (axes as an input) has no converter in onnx2torch 1.5


def _at_supported_opset(model, job: Job):
    onnx = require("onnx", "onnx")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset <= ONNX2TORCH_MAX_OPSET:
        return model
    with job.stage("prepare:opset") as record:
        try:
            converted = onnx.version_converter.convert_version(model, ONNX2TORCH_MAX_OPSET)
        except Exception as exc:  # keep the original; onnx2torch will name what it cannot convert
            record.detail = f"opset {opset} kept: {first_line(exc)}"
            return model
        record.detail = f"opset {opset} -> {ONNX2TORCH_MAX_OPSET}"
        return converted


def onnx_to_torch(artifact: Artifact, job: Job, out: str) -> Artifact:
    torch = require("torch", "torch")
    from fwconv.convert.onnx2torch_compat import convert_model, refuse_torchvision_ops

    model = _at_supported_opset(load_onnx(artifact.path), job)
    refuse_torchvision_ops(model)
    inputs, outputs = io_specs(model)
    with job.stage("convert:onnx2torch") as record, captured_output():
        try:
            graph_module = convert_model(model)
        except NotImplementedError as exc:
            ops = re.findall(r"operation_type='([^']+)', version=(\d+)", str(exc))
            raise UnsupportedOpError([f"{op} (opset {v})" for op, v in ops] or [first_line(exc)], stage="convert",
                                     hint="onnx2torch has no converter for it", target="convertible by onnx2torch") from exc
        except UnsupportedOpError:
            raise
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError("convert", f"onnx2torch failed: {first_line(exc)}") from exc
    wrapper = _named_module(graph_module, [s.name for s in inputs], [s.name for s in outputs])
    example = tuple(torch.from_numpy(a) for a in _feed(job, artifact))
    with job.stage("save:torchscript") as record, captured_output():
        try:
            traced = torch.jit.trace(wrapper, example, strict=False, check_trace=False)
            traced.save(out)
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError("save", f"tracing the converted module to TorchScript failed: {first_line(exc)}") from exc
    step = {side: [{"source": s.name, "name": py_name(s.name), "transpose": None} for s in specs]
            for side, specs in (("inputs", inputs), ("outputs", outputs))}
    for spec in inputs + outputs:
        spec.name = py_name(spec.name)
    prev_layout = {py_name(s.name): s.layout for s in artifact.inputs + artifact.outputs}
    for spec in inputs + outputs:
        spec.layout = prev_layout.get(spec.name)
    return Artifact(path=out, format="torchscript", inputs=inputs, outputs=outputs, tools=tool_versions(*TOOLS),
                    notes=artifact.notes + ["saved as TorchScript (torch.jit.load); recurrent ops unrolled over the "
                                            "sample's sequence length"],
                    extra={"interface": compose_interface(artifact.extra.get("interface"), step)})


EDGES = [Edge("onnx", "torch", "onnx2torch", onnx_to_torch, TOOLS, max_opset=ONNX2TORCH_MAX_OPSET)]
