"""PyTorch -> TFLite directly with litert-torch: no ONNX, no TensorFlow.

It needs a module that torch.export accepts (a .pt2 or a factory; not a ScriptModule). The
module is wrapped so that inputs are passed by the source's names (sample_kwargs) and outputs
come back as a dict under fwconv's output names: the .tflite signature then carries the same
names as the ONNX route. litert-torch downcasts int64 I/O to int32 (what device runtimes take);
the manifest records the artifact's real dtypes and the validator casts the feed.
"""

from __future__ import annotations

from fwconv.convert.edges import Capabilities, Edge, named_module
from fwconv.convert.job import Artifact, Job
from fwconv.interface import Interface
from fwconv.errors import ConversionError, UnsupportedOpError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.quiet import captured_output

TOOLS = ("torch", "litert-torch", "ai-edge-litert")


# Measured with litert-torch 0.x here: a plain conv stack keeps its batch dynamic; an MLP, a 1-D conv
# net and a CNN with a flatten fail in its JAX lowering ("broadcast_in_dim shape must have every
# element be nonnegative"), so --dynamic takes this route only when asked for by name.
CAPS = Capabilities(
    exportable_only=True, quantize=(None,), quantize_by_name=("int8",), int8_io=False, layouts=("source",),
    dynamic="by-name", dynamic_with_quantize=False,
    why=(("quantize", "--quantize {value} is done on the ONNX route (litert-torch's PT2E int8 only here)"),
         ("int8_io", "--int8-io is done on the ONNX route (litert-torch's int8 keeps a float output)"),
         # its artifact takes an int8 input: another interface than the source's, so never by default
         ("quantize_by_name", "--quantize int8 on litert-torch gives an int8 input; ask for it with --via litert"),
         ("layout", "--layout nhwc is done on the ONNX route"),
         ("dynamic", "litert-torch's JAX lowering fails on variable sizes for most graphs (--dynamic goes the ONNX "
                     "route; --via litert tries it anyway)")))


def torch_to_tflite(artifact: Artifact, job: Job, out: str) -> Artifact:
    torch = require("torch", "litert")
    source = job.torch_source
    litert_torch = require("litert_torch", "litert")
    from fwconv.models.tflite import op_summary
    from fwconv.models.tflite import read_io

    names_in, names_out = list(job.sample), list(job.reference_outputs)
    quant_config, notes = None, []
    if job.dynamic:
        module, how = _dynamic_call(source, job, names_in, names_out)
    else:
        module = named_module(source.callable(), names_in, names_out)
        how = {"sample_kwargs": {n: torch.from_numpy(a.copy()) for n, a in job.sample.items()}}
    if job.options.quantize:
        with job.stage("quantize:pt2e"), captured_output():
            module, quant_config, notes = _pt2e_quantize(module, how["sample_kwargs"], job)
    with job.stage("convert:litert-torch") as record, captured_output():
        try:
            litert_torch.convert(module, quant_config=quant_config, **how).export(out)
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
        notes=["route: litert-torch (direct)"] + notes,
        extra={"signature": "serving_default"}, interface=Interface.identity(names_in, names_out),
    )


def _dynamic_call(source, job: Job, names_in: list[str], names_out: list[str]):
    """The module and litert_torch.convert's arguments with the dims kept variable: torch.export
    Dims (the user's and a .pt2's own) on a fixed-arity forward (torch.export takes no
    dynamic_shapes for a **kwargs forward), a size-1 dim enlarged to 2 first. litert-torch keeps
    them where its JAX lowering can (conv/elementwise graphs); a view or reshape over a variable size
    fails there, and `--via auto` goes on to the ONNX route."""
    import torch

    from fwconv.dynamic import export_sample, torch_dynamic_shapes

    module = named_module(source.callable(), names_in, names_out, positional=True)
    args = tuple(torch.from_numpy(a) for a in export_sample(job.sample, job.dynamic).values())
    return module, {"sample_args": args, "dynamic_shapes": torch_dynamic_shapes(job.dynamic, names_in)}


def _pt2e_quantize(module, kwargs: dict, job: Job):
    """litert-torch's own quantization: its PT2E quantizer (symmetric, per-channel weights, the
    XNNPACK scheme) on the torch.export graph, calibrated on the user's samples. The artifact takes
    an int8 input (scale/zero-point in the manifest) and gives a float output. Returns (module,
    config, notes)."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = job.options.quantize == "dynamic"
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
    graph = prepare_pt2e(torch.export.export(module, (), kwargs).module(), quantizer)
    samples = [job.sample] if dynamic else _calibration(job)
    with torch.no_grad():
        for sample in samples:
            graph(**{n: torch.from_numpy(a.copy()) for n, a in sample.items()})
    notes = ["precision: litert-torch PT2E " + ("dynamic int8" if dynamic else
             f"full int8 (int8 input, float output), calibrated on {len(samples)} samples")]
    return convert_pt2e(graph, fold_quantize=False), QuantConfig(pt2e_quantizer=quantizer), notes


def _calibration(job: Job) -> list:
    from fwconv.convert.calibration import load_calibration
    from fwconv.specs import TensorSpec

    return load_calibration(job.options.calibration, [TensorSpec(n, list(a.shape), a.dtype.name) for n, a in job.sample.items()])


EDGES = [Edge("torch", "tflite", torch_to_tflite, TOOLS, via="litert", caps=CAPS, tool="litert-torch")]
