"""PyTorch -> ExecuTorch `.pte`: torch.export, EXIR lowering, the program's flatbuffer.

One edge per backend, tagged with its name: XNNPACK (the delegate takes what it can, the rest
runs on the runtime's portable kernels) or portable (no delegate). `--backend` picks one (default
xnnpack); `--backend auto` lets the pipeline convert both and keep the fastest that passes, by the
rule the TFLite routes use. int8 is XNNPACK's PT2E flow on the user's calibration samples.
A .pte has no tensor names of its own: the source's go into a constant method (IO_METHOD), and
the delegation summary (what XNNPACK took, what stayed on kernels) goes into the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re

from fwconv.convert.edges import Capabilities, Edge, named_module
from fwconv.convert.job import Artifact, Job
from fwconv.errors import ConversionError, UnsupportedOpError, first_line, require
from fwconv.interface import Interface
from fwconv.manifest import tool_versions
from fwconv.models.executorch import IO_METHOD
from fwconv.quiet import captured_output
from fwconv.specs import TensorSpec

TOOLS = ("torch", "executorch", "torchao")
BACKENDS = ("xnnpack", "portable")
BACKEND_IDS = {"xnnpack": "XnnpackBackend", "portable": None}
_NOT_CORE_ATEN = re.compile(r"Operator torch\._ops\.(?P<op>\S+?) is not in Core ATen opset")


def _capabilities(backend: str) -> Capabilities:
    int8 = ("int8",) if backend == "xnnpack" else ()
    quantize_why = ("--quantize {value} has no ExecuTorch flow here (int8 with --calibration has, on XNNPACK)"
                    if backend == "xnnpack" else
                    "--quantize {value}: int8 is quantized for the XNNPACK delegate (--backend xnnpack)")
    return Capabilities(
        exportable_only=True, backend=backend, quantize=(None, *int8), int8_io=False, layouts=("source",),
        dynamic_with_quantize=False,
        why=(("quantize", quantize_why),
             ("int8_io", "--int8-io: an ExecuTorch int8 program keeps float inputs and outputs"),
             ("layout", "--layout {layout}: a .pte keeps the source's layout"),
             ("dynamic_quantize", "--dynamic with --quantize: fwconv calibrates and exports the int8 program at the "
                                  "sample's shapes")))


def _export(module, args: tuple, job: Job, stage: str = "export", dynamic_shapes: tuple | None = None):
    torch = require("torch", "executorch")
    with job.stage(stage) as record, captured_output():
        try:
            with torch.no_grad():
                return torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError(stage, f"torch.export failed: {first_line(exc)}",
                                  hint="ExecuTorch needs a graph torch.export can capture; --debug shows the log") from exc


def _quantize(exported, args: tuple, job: Job):
    """XNNPACK's PT2E int8 flow: annotate, calibrate on the user's samples, convert, re-export."""
    torch = require("torch", "executorch")
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "executorch")
    xq = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch")
    from fwconv.convert.calibration import load_calibration

    specs = [TensorSpec(n, list(a.shape), a.dtype.name) for n, a in job.sample.items()]
    samples = load_calibration(job.options.calibration, specs)
    with job.stage("quantize:pt2e") as record, captured_output():
        try:
            quantizer = xq.XNNPACKQuantizer().set_global(xq.get_symmetric_quantization_config(is_per_channel=True))
            prepared = pt2e.prepare_pt2e(exported.module(), quantizer)
            with torch.no_grad():
                for sample in samples:
                    prepared(*[torch.from_numpy(sample[n].copy()) for n in job.sample])
            converted = pt2e.convert_pt2e(prepared)
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError("quantize", f"PT2E int8 quantization failed: {first_line(exc)}") from exc
    return _export(converted, args, job, stage="export:quantized"), len(samples)


@contextlib.contextmanager
def _keeping_ranges():
    """Lower and emit without narrowing a dynamic dim's range: under no_grad as the export was,
    and with torch's backed_size_oblivious (what ExecuTorch PR 19262 runs its XNNPACK passes
    with; pytorch#118289 names CPU conv kernel selection guarding on 16 as the cause). Without
    them a CNN's batch range 1..64 came out 2..15 here and the program allocated a batch of 15;
    turning mkldnn off alone did not help."""
    torch = require("torch", "executorch")
    with torch.no_grad(), torch.fx.experimental._config.patch(backed_size_oblivious=True):
        yield


def _gelu_form(node) -> str:
    return str(node.kwargs.get("approximate", node.args[1] if len(node.args) > 1 else "none"))


def xnnpack_partitioner():
    """XNNPACK's partitioner, but a tanh-approximated GELU stays on the portable kernel: XNNPACK's
    GELU is the exact (erf) form and its node visitor (executorch 1.5.1 op_gelu.py) drops
    `approximate`, so a delegated `gelu(x, approximate="tanh")` computes another function. Found
    on transformers' Gemma (gelu_pytorch_tanh): delegating GELU alone moved the logits by 1.9e-5 of
    their scale (4 layers, hidden 512; 1.9e-4 on a larger one), every other op alone by < 1e-6."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import GeluConfig
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class ExactGeluConfig(GeluConfig):
        def check_constraints(self, node, ep) -> bool:
            return _gelu_form(node) == "none" and super().check_constraints(node, ep)

    return XnnpackPartitioner(configs=[ExactGeluConfig if c is GeluConfig else c for c in ALL_PARTITIONER_CONFIGS])


def tanh_gelus(exported) -> int:
    """How many tanh-approximated GELUs the program has (kept out of XNNPACK by xnnpack_partitioner)."""
    return sum(1 for n in exported.graph.nodes if n.op == "call_function" and "gelu" in str(n.target)
               and _gelu_form(n) == "tanh")


def lower(exported, backend: str, constant_methods: dict, job: Job):
    """EXIR lowering for `backend`, with `constant_methods` (name -> value) in the program."""
    exir = require("executorch.exir", "executorch")
    partitioners = [xnnpack_partitioner()] if backend == "xnnpack" else []
    with job.stage(f"lower:{backend}") as record, captured_output(), _keeping_ranges():
        try:
            return exir.to_edge_transform_and_lower(exported, partitioner=partitioners,
                                                    constant_methods=constant_methods)
        except Exception as exc:
            record.detail = first_line(exc)
            ops = _NOT_CORE_ATEN.findall(str(exc))
            if ops:
                raise UnsupportedOpError(ops, stage="lower", target="in ExecuTorch's Core ATen operator set",
                                         hint="ExecuTorch runs Core ATen ops; rewrite the model without them") from exc
            raise ConversionError("lower", f"ExecuTorch lowering failed: {first_line(exc)}") from exc


def delegation(edge_program, backend: str) -> dict:
    """What the delegate took and what stays on the runtime's kernels, per edge operator."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.exported_program().graph_module)
    by_op = {op: b for op, b in info.delegation_by_operator.items() if op != "getitem"}  # tuple access, not an op
    return {"backend": BACKEND_IDS[backend], "delegated_subgraphs": info.num_delegated_subgraphs,
            "delegated": {op: b.delegated for op, b in sorted(by_op.items()) if b.delegated},
            "portable": {op: b.non_delegated for op, b in sorted(by_op.items()) if b.non_delegated}}


def emit(edge_program, out: str, job: Job) -> None:
    with job.stage("emit") as record, captured_output(), _keeping_ranges():
        try:
            buffer = edge_program.to_executorch().buffer
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError("emit", f"ExecuTorch could not emit the program: {first_line(exc)}") from exc
    with open(out, "wb") as f:
        f.write(buffer)


# ExecuTorch plans memory at each dynamic dim's upper bound, so every dim needs one: an open MAX
# is closed here (or at the example's size, if larger) and the manifest says so.
DEFAULT_PTE_MAX = 64


def _bounded_dims(job: Job) -> tuple[tuple | None, list[str], set]:
    """torch.export's dynamic_shapes (inputs in order) with every dim bounded, the notes, and the
    labels bounded by default; the job's dims take the bounds used, so the manifest and the
    validator see the program's range."""
    from fwconv.dynamic import bounded, torch_dynamic_shapes

    if not job.dynamic:
        return None, [], set()
    names = list(job.sample)
    job.dynamic, closed = bounded(job.dynamic, {n: list(a.shape) for n, a in job.sample.items()}, DEFAULT_PTE_MAX)
    notes = [f"dynamic dim '{label}' had no MAX: bounded at {size} (ExecuTorch plans memory at the upper bound; "
             f"give NAME:DIM:MIN..MAX to choose)" for label, size in closed.items()]
    return torch_dynamic_shapes(job.dynamic, names), notes, set(closed)


def _program_bounds(io: dict, job: Job, backend: str, defaulted: set) -> list[str]:
    """The upper bounds the program really allocates, read back: lowering can narrow a range (it
    did, 64 -> 15, before _keeping_ranges). A MAX the user gave that the program
    cannot take fails this backend; a default bound narrowed is kept as the program has it, and said."""
    notes = []
    for spec, capacity in zip(io["inputs"], io["capacity"]):
        for i, d in list(job.dynamic.get(spec.name, {}).items()):
            real = capacity[i] if capacity else d.max
            if real >= d.max:
                continue
            if d.label not in defaulted:
                raise ConversionError("lower", f"the {backend} program takes '{d.label}' only up to {real}, "
                                      f"not the asked {d.max}", hint="ask a smaller MAX, or try --backend portable")
            job.dynamic[spec.name][i] = dataclasses.replace(d, max=real)
            notes.append(f"{backend} narrowed the bound of '{d.label}' to {real} (the program's allocation)")
    return notes


def torch_to_pte(artifact: Artifact, job: Job, out: str, *, backend: str) -> Artifact:
    from fwconv.dynamic import export_sample
    from fwconv.models.executorch import program_contents, read_io

    torch = require("torch", "executorch")
    names_in, names_out = list(job.sample), list(job.reference_outputs)
    dynamic_shapes, notes, defaulted = _bounded_dims(job)
    args = tuple(torch.from_numpy(a.copy()) for a in export_sample(job.sample, job.dynamic).values())
    module = named_module(job.torch_source.callable(), names_in, names_out, positional=True)
    exported = _export(module, args, job, dynamic_shapes=dynamic_shapes)
    notes = [f"ExecuTorch, backend: {backend}"] + notes
    if job.options.quantize == "int8":
        exported, count = _quantize(exported, args, job)
        notes.append(f"precision: int8 (XNNPACK PT2E, per-channel weights), calibrated on {count} samples")
    dims = {n: sorted(per) for n, per in job.dynamic.items()}
    names = {"inputs": names_in, "outputs": names_out, "dynamic": dims}
    edge_program = lower(exported, backend, {IO_METHOD: json.dumps(names)}, job)
    kept = tanh_gelus(exported) if backend == "xnnpack" else 0
    if kept:
        notes.append(f"{kept} tanh-approximated GELU(s) kept on the portable kernel: XNNPACK's GELU "
                     "is the exact form and ExecuTorch's XNNPACK lowering drops `approximate`")
    ops = delegation(edge_program, backend)
    emit(edge_program, out, job)
    ops.update(program_contents(out)["forward"])
    io = read_io(out)
    layouts = {s.name: s.layout for s in artifact.inputs + artifact.outputs}
    for spec in io["inputs"] + io["outputs"]:
        spec.layout = layouts.get(spec.name)
    notes += _program_bounds(io, job, backend, defaulted)
    return Artifact(path=out, format="pte", inputs=io["inputs"], outputs=io["outputs"], tools=tool_versions(*TOOLS),
                    ops=ops, notes=notes, extra={"backend": backend, "methods": io["methods"]},
                    interface=Interface.identity(names_in, names_out))

EDGES = [Edge("torch", "pte", functools.partial(torch_to_pte, backend=b), TOOLS, via=b, caps=_capabilities(b),
              tool="ExecuTorch") for b in BACKENDS]
