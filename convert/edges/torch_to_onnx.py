"""PyTorch -> ONNX with torch.onnx.export, trying exporters in order and recording which ran.

The dynamo exporter handles modules and ExportedPrograms; the TorchScript-based exporter is
the only way for a ScriptModule and a fallback when dynamo decomposition fails (seen on
windowed-attention and T5-style text encoders), for a `.pt2` too (its unlifted module is traced).
Shapes are the sample's, except the dims that stay dynamic (torch.export Dims for dynamo,
dynamic_axes for the TorchScript exporter).
"""

from __future__ import annotations

import dataclasses

from fwconv.convert.edges import Capabilities, Edge
from fwconv.convert.job import Artifact, Job
from fwconv.interface import Interface
from fwconv.models.onnx import io_specs, load_onnx
from fwconv.errors import ConversionError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.quiet import captured_output

TOOLS = ("torch", "onnx", "onnxscript")


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """torch.onnx.export's exporter: auto (dynamo, then TorchScript), dynamo or torchscript. Once
    an export succeeded, the job records the one that ran."""

    exporter: str = "auto"

    @classmethod
    def from_options(cls, options) -> "ExportSettings":
        return cls(exporter=options.exporter)


def exporter_order(kind: str, requested: str) -> list[str]:
    if kind == "torchscript":
        if requested == "dynamo":
            raise ConversionError("export", "a TorchScript module cannot go through the dynamo exporter",
                                  hint="use --exporter torchscript or give a .pt2 / factory")
        return ["torchscript"]
    if requested in ("dynamo", "torchscript"):
        return [requested]
    return ["dynamo", "torchscript"]


def _export(exporter: str, source, args: tuple, out: str, in_names, out_names, opset: int, dynamic: dict) -> None:
    torch = require("torch", "torch")
    if exporter == "dynamo":
        require("onnxscript", "torch")
        model = source.model if source.kind == "exported" else source.callable()
        extra = {}
        if dynamic and source.kind != "exported":  # a .pt2 carries its own Dims
            from fwconv.dynamic import torch_dynamic_shapes

            extra["dynamic_shapes"] = torch_dynamic_shapes(dynamic, in_names)
        torch.onnx.export(model, args, out, dynamo=True, opset_version=opset, input_names=in_names,
                          output_names=out_names, external_data=False, optimize=True, verbose=False, **extra)
    else:
        register_torchscript_symbolics()
        axes = {name: {i: d.label for i, d in dynamic.get(name, {}).items()} for name in in_names if name in dynamic}
        torch.onnx.export(_traceable(source), args, out, dynamo=False, opset_version=opset,
                          input_names=in_names, output_names=out_names, do_constant_folding=True,
                          dynamic_axes=axes or None)


def register_torchscript_symbolics() -> None:
    """Ops the TorchScript exporter has no symbolic for, that real models use: `aten::diff`
    (transformers' mask code, `find_packed_sequence_indices`: every causal LM and MobileViTV2 failed
    with "Exporting the operator 'aten::diff' to ONNX ... not supported"). Registered once, for
    opset 9 and up."""
    torch = require("torch", "torch")
    from torch.onnx import symbolic_helper as sh

    @sh.parse_args("v", "i", "i", "v", "v")
    def diff(g, x, n, dim, prepend, append):
        if not sh._is_none(prepend):
            x = g.op("Concat", prepend, x, axis_i=dim)
        if not sh._is_none(append):
            x = g.op("Concat", x, append, axis_i=dim)
        for _ in range(n):  # out[i] = x[i + 1] - x[i] along dim, n times
            later = sh._slice_helper(g, x, axes=[dim], starts=[1], ends=[2**63 - 1])
            earlier = sh._slice_helper(g, x, axes=[dim], starts=[0], ends=[-1])
            x = g.op("Sub", later, earlier)
        return x

    torch.onnx.register_custom_op_symbolic("aten::diff", diff, 9)
    torch.onnx.register_custom_op_symbolic("aten::scaled_dot_product_attention", _sdpa_with_gqa, 14)


def _sdpa_with_gqa(g, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                   enable_gqa=False):
    """The exporter's own SDPA symbolic, with grouped-query attention (transformers passes
    enable_gqa=True when a model has fewer KV heads than query heads; the stock symbolic refuses it):
    each KV head repeated for its group of query heads first, as torch does."""
    from torch.onnx import symbolic_helper as sh
    from torch.onnx._internal.torchscript_exporter import symbolic_opset14

    gqa = sh._maybe_get_const(enable_gqa, "b")
    if gqa is True or (not isinstance(gqa, bool) and bool(sh._maybe_get_const(enable_gqa, "i"))):
        key, value = (_repeat_kv_heads(g, query, t) for t in (key, value))
    return symbolic_opset14.scaled_dot_product_attention(g, query, key, value, attn_mask, dropout_p, is_causal, scale,
                                                         False)


def _repeat_kv_heads(g, query, kv):
    """[B, kv_heads, T, D] -> [B, heads, T, D], each KV head repeated heads/kv_heads times in place."""
    from torch.onnx import symbolic_helper as sh

    heads, groups, dim = sh._get_tensor_dim_size(query, 1), sh._get_tensor_dim_size(kv, 1), sh._get_tensor_dim_size(kv, 3)
    if not all(isinstance(d, int) for d in (heads, groups, dim)):
        raise RuntimeError("grouped-query attention with unknown head counts cannot be exported here")
    expanded = g.op("Tile", g.op("Unsqueeze", kv, g.op("Constant", value_t=_ints([2]))),
                    g.op("Constant", value_t=_ints([1, 1, heads // groups, 1, 1])))
    return g.op("Reshape", expanded, g.op("Constant", value_t=_ints([0, heads, -1, dim])))


def _ints(values: list[int]):
    torch = require("torch", "torch")
    return torch.tensor(values, dtype=torch.int64)


def _export_args(torch, job: Job) -> tuple:
    """The sample as tensors (size-1 dynamic dims enlarged: fwconv.dynamic.export_sample)."""
    from fwconv.dynamic import export_sample

    return tuple(torch.from_numpy(a) for a in export_sample(job.sample, job.dynamic).values())


def _traceable(source):
    """The module the TorchScript exporter traces. An ExportedProgram's module refuses train()
    ("Calling train() is not supported yet"), which that exporter calls to set eval mode; its
    mode was fixed when it was exported, so train() becomes a no-op on this one instance."""
    module = source.callable()
    if source.kind == "exported":
        module.train = lambda mode=True: module
    return module


def torch_to_onnx(artifact: Artifact, job: Job, out: str) -> Artifact:
    torch = require("torch", "torch")
    source = job.torch_source
    in_names = list(job.sample)
    out_names = list(job.reference_outputs)
    args = _export_args(torch, job)
    attempts: list[str] = []
    settings = job.settings(ExportSettings)
    for exporter in exporter_order(source.kind, settings.exporter):
        with job.stage(f"export:{exporter}") as record:
            try:
                with captured_output():
                    _export(exporter, source, args, out, in_names, out_names, job.opset(), job.dynamic)
                model = load_onnx(out)
            except Exception as exc:  # each exporter fails in its own way; the next one may work
                record.status, record.detail = "failed", first_line(exc)
                attempts.append(f"{exporter}: {first_line(exc)}")
                continue
        job.used[ExportSettings] = dataclasses.replace(settings, exporter=exporter)
        inputs, outputs = io_specs(model)
        for spec, src_spec in zip(inputs, artifact.inputs):
            spec.layout = src_spec.layout
        for spec, ref in zip(outputs, artifact.outputs):
            spec.layout = ref.layout
        return Artifact(
            path=out, format="onnx", inputs=inputs, outputs=outputs, tools=tool_versions(*TOOLS),
            notes=[f"exporter: {exporter}" + (f" (after {'; '.join(attempts)})" if attempts else "")],
            extra={"exporter": exporter, "opset": job.opset()},
            interface=Interface.identity([s.name for s in inputs], [s.name for s in outputs]),
        )
    raise ConversionError("export", "every ONNX exporter failed: " + " | ".join(attempts),
                          hint="run with --debug for the exporters' logs")


EDGES = [Edge("torch", "onnx", torch_to_onnx, TOOLS, tool="torch.onnx", caps=Capabilities(
    dynamic_torchscript=False,
    why=(("dynamic_torchscript", "a TorchScript trace has its shapes baked in: --dynamic needs a .pt2 exported with "
                                 "torch.export.Dim or a factory"),)))]
