"""PyTorch -> TFLite directly with litert-torch: no ONNX, no TensorFlow.

It needs a module that torch.export accepts (a .pt2 or a factory; not a ScriptModule). The
module is wrapped so that inputs are passed by the source's names (sample_kwargs) and outputs
come back as a dict under fwconv's output names: the .tflite signature then carries the same
names as the ONNX route. litert-torch downcasts int64 I/O to int32 (what device runtimes take);
the manifest records the artifact's real dtypes and the validator casts the feed.
"""

from __future__ import annotations

from fwconv.convert.edges import Edge, named_module, needs_exportable_module
from fwconv.convert.job import Artifact, Job
from fwconv.interface import Interface
from fwconv.errors import ConversionError, UnsupportedOpError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.quiet import captured_output

TOOLS = ("torch", "litert-torch", "ai-edge-litert")


def rejects(fmt: str, options) -> str | None:
    if needs_exportable_module(fmt, options, "litert-torch"):
        return needs_exportable_module(fmt, options, "litert-torch")
    if options.quantize:
        return f"--quantize {options.quantize} is done on the ONNX route"
    if options.layout != "source":
        return "--layout nhwc is done on the ONNX route"
    if options.dynamic:
        return "litert-torch lowers through JAX, which needs concrete shapes (--dynamic is done on the ONNX route)"
    return None


def torch_to_tflite(artifact: Artifact, job: Job, out: str) -> Artifact:
    torch = require("torch", "litert")
    source = job.torch_source
    litert_torch = require("litert_torch", "litert")
    from fwconv.models.tflite import op_summary
    from fwconv.models.tflite import read_io

    names_in, names_out = list(job.sample), list(job.reference_outputs)
    module = named_module(source.callable(), names_in, names_out)
    kwargs = {n: torch.from_numpy(a.copy()) for n, a in job.sample.items()}
    with job.stage("convert:litert-torch") as record, captured_output():
        try:
            litert_torch.convert(module, sample_kwargs=kwargs).export(out)
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError("convert", f"litert-torch failed: {first_line(exc)}",
                                  hint="try --via onnx; --debug shows the converter's log") from exc
    summary = op_summary(out)
    if (summary["flex"] or summary["custom"]) and not job.options.allow_flex:
        raise UnsupportedOpError(summary["flex"] + summary["custom"], stage="check")
    io = read_io(out)
    inputs, outputs = ({s.name: s for s in io[side]} for side in ("inputs", "outputs"))
    for spec_map, src_specs in ((inputs, artifact.inputs), (outputs, artifact.outputs)):
        for src in src_specs:
            if src.name in spec_map:
                spec_map[src.name].layout = src.layout
    return Artifact(
        path=out, format="tflite", inputs=[inputs[n] for n in names_in if n in inputs],
        outputs=[outputs[n] for n in names_out if n in outputs], tools=tool_versions(*TOOLS), ops=summary,
        notes=["route: litert-torch (direct)"],
        extra={"signature": "serving_default"}, interface=Interface.identity(names_in, names_out),
    )


EDGES = [Edge("torch", "tflite", torch_to_tflite, TOOLS, via="litert", rejects=rejects)]
