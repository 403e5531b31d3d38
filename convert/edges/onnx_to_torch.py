"""ONNX -> PyTorch with onnx2torch, saved as TorchScript (`torch.jit.load`-able).

The GraphModule onnx2torch builds is wrapped so that it is called like the source (positional
or keyword arguments under the source's input names) and returns what a PyTorch user expects:
a tensor for one output, a tuple in the source's order for several, a dict only where the
source returns one (a Keras model with dict outputs) or `--outputs dict` asks. The source's
output names ride along as the module's `output_names` attribute and in the manifest. It is
traced with the job's sample (recurrent loops unrolled) and saved. onnx2torch's torchvision import and its
missing LSTM/GRU converters are handled in convert/onnx2torch_compat.py.

Dynamic dims: TorchScript is the only format the GraphModule saves to (torch.export fails on its
shape ops; torch.jit.script fails on its modules), and a trace records `size()` as graph ops, so
the traced module ran at other batch sizes and sequence lengths here (CNN, transformer block,
exported by fwconv with symbolic dims). Nothing guarantees it for every graph: the validator runs
it at each size and fails the size a trace baked in. Recurrent ops are unrolled over the sample's
length, so with dynamic dims they are refused up front.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from fwconv.convert.edges import Edge
from fwconv.convert.job import Artifact, Job
from fwconv.interface import Binding, Interface
from fwconv.convert.onnx_prepare import adopt_prepare_stages
from fwconv.models.onnx import io_specs, load_onnx
from fwconv.errors import ConversionError, UnsupportedOpError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.quiet import captured_output
from fwconv.specs import identifier

TOOLS = ("onnx2torch", "torch", "onnx")


def py_name(name: str) -> str:
    return identifier(name, leading_underscore=True)


@dataclasses.dataclass
class OutputStructure:
    """What the saved module returns: a tensor, a tuple, or a dict, in the source's order.

    `order[i]` is the index of the ONNX output returned in place i; `names` the source's names
    of what is returned, in that order (the manifest and the module's `output_names` carry them).
    """

    kind: str  # "tensor" | "tuple" | "dict"
    order: list[int]
    names: list[str]

    def returned_names(self) -> list[str]:
        """The names a reader of the returned structure sees (fwconv's runners name a tensor
        `output` and tuple items `output_i`; a dict keeps its keys)."""
        if self.kind == "dict":
            return [py_name(n) for n in self.names]
        return ["output"] if self.kind == "tensor" else [f"output_{i}" for i in range(len(self.order))]


def output_structure(onnx_outputs: list[str], source_of: dict[str, str], job: Job) -> OutputStructure:
    """Source order from the reference run; tensor/tuple unless the user or the source asks for a dict."""
    source_order = list(job.reference_outputs or {})
    rank = lambda i: source_order.index(source_of[onnx_outputs[i]]) if source_of.get(onnx_outputs[i]) in source_order \
        else len(source_order) + i
    order = sorted(range(len(onnx_outputs)), key=rank)
    names = [source_of.get(onnx_outputs[i], onnx_outputs[i]) for i in order]
    wanted = job.options.outputs
    if wanted == "dict" or (wanted == "auto" and job.source_returns_dict):
        return OutputStructure("dict", order, names)
    return OutputStructure("tensor" if len(order) == 1 and wanted == "auto" else "tuple", order, names)


def _named_module(graph_module, in_names: list[str], structure: OutputStructure):
    torch = require("torch", "torch")
    params = ", ".join(py_name(n) for n in in_names)
    namespace: dict = {}
    exec(f"def forward(self, {params}):\n    return self._structured(self.inner({params}))", namespace)  # named params

    class StructuredIO(torch.nn.Module):
        forward = namespace["forward"]

        def __init__(self):
            super().__init__()
            self.inner = graph_module

        def _structured(self, outs):
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            picked = [outs[i] for i in structure.order]
            if structure.kind == "dict":
                return dict(zip(structure.returned_names(), picked, strict=True))
            return picked[0] if structure.kind == "tensor" else tuple(picked)

    return StructuredIO().eval()


def _feed(job: Job, prev: Artifact) -> list[np.ndarray]:
    """The sample in the ONNX model's input order, layout and dtypes (the interface says how)."""
    interface = prev.interface or Interface.identity([s.name for s in prev.inputs], [])
    fed = interface.feed(job.sample, order=[s.name for s in prev.inputs])
    return [np.ascontiguousarray(fed[s.name]).astype(s.dtype) for s in prev.inputs]


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


RECURRENT_OPS = ("LSTM", "GRU", "RNN", "Loop", "Scan")


def _refuse_unrolled(model, job: Job) -> list[str]:
    """Recurrent ops are unrolled over the sample's sequence length (onnx2torch_compat): such a
    module cannot take another size. Dims the user asked for stop the conversion, saying why;
    dims only the source left open are fixed at the sample's sizes, and the note says so."""
    found = sorted({n.op_type for n in model.graph.node if n.op_type in RECURRENT_OPS})
    if not (job.dynamic and found):
        return []
    why = f"the recurrent ops ({', '.join(found)}) are unrolled over the sample's length when traced to TorchScript"
    if job.options.dynamic:
        raise ConversionError("convert", f"keeps shapes static: {why}, so --dynamic cannot hold",
                              hint="convert without --dynamic (fixed shapes), or to ONNX/TFLite, which keep them")
    frozen = sorted({d.label for per in job.dynamic.values() for d in per.values()})
    job.dynamic = {}
    return [f"the source's dynamic dims ({', '.join(frozen)}) are fixed at the sample's sizes: {why}"]


def onnx_to_torch(artifact: Artifact, job: Job, out: str) -> Artifact:
    torch = require("torch", "torch")
    from fwconv.convert.onnx2torch_compat import convert_model, refuse_torchvision_ops, relax_reshape_allowzero

    adopt_prepare_stages(artifact, job)  # e.g. prepare:opset, done to the source before this job existed
    model = relax_reshape_allowzero(_at_supported_opset(load_onnx(artifact.path), job))
    refuse_torchvision_ops(model)
    frozen = _refuse_unrolled(model, job)
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
    source_of = {b.name: b.source for b in artifact.interface.outputs} if artifact.interface else {}
    structure = output_structure([s.name for s in outputs], source_of, job)
    wrapper = _named_module(graph_module, [s.name for s in inputs], structure)
    _save_torchscript(torch, wrapper, tuple(torch.from_numpy(a) for a in _feed(job, artifact)), structure, job, out)
    outputs = [outputs[i] for i in structure.order]
    step = Interface(tuple(Binding(s.name, py_name(s.name)) for s in inputs),
                     tuple(Binding(s.name, n) for s, n in zip(outputs, structure.returned_names(), strict=True)))
    prev_layout = {s.name: s.layout for s in artifact.inputs + artifact.outputs}
    for spec in inputs + outputs:
        spec.layout = prev_layout.get(spec.name)
    for spec in inputs:
        spec.name = py_name(spec.name)
    for spec, name in zip(outputs, structure.returned_names(), strict=True):
        spec.name = name
    returns = {"tensor": "a tensor", "tuple": f"a tuple ({', '.join(structure.names)})",
               "dict": f"a dict ({', '.join(structure.returned_names())})"}[structure.kind]
    return Artifact(path=out, format="torchscript", inputs=inputs, outputs=outputs, tools=tool_versions(*TOOLS),
                    notes=artifact.notes + [f"saved as TorchScript (torch.jit.load); returns {returns}; "
                                            "recurrent ops unrolled over the sample's sequence length"]
                    + (["dynamic dims: traced (size() recorded as graph ops); proven by the validator at each size"]
                       if job.dynamic else []) + frozen,
                    extra={"output_structure": structure.kind, "output_names": structure.names},
                    interface=artifact.interface.compose(step) if artifact.interface else step)


def _save_torchscript(torch, wrapper, example: tuple, structure: OutputStructure, job: Job, out: str) -> None:
    """Trace with the sample and save; the module carries `input_names` and `output_names`."""
    with job.stage("save:torchscript") as record, captured_output():
        try:
            traced = torch.jit.trace(wrapper, example, strict=False, check_trace=False)
            string_list = torch._C.ListType(torch._C.StringType.get())
            traced._c._register_attribute("output_names", string_list, list(structure.names))
            traced.save(out)
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError("save", f"tracing the converted module to TorchScript failed: {first_line(exc)}") from exc


EDGES = [Edge("onnx", "torch", onnx_to_torch, TOOLS, max_opset=ONNX2TORCH_MAX_OPSET)]
