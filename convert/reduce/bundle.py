"""The repro bundle: what a converter's maintainer runs in one command, with nothing of the
user's but the minimal subgraph (no paths, no names of the user's files).

    minimal.onnx   the subgraph the converter still gets wrong
    inputs.npz     its inputs (input_0, ...), from ONNX Runtime on the whole model
    expected.npz   its outputs in ONNX Runtime (output_0, ...)
    repro.py       the converter alone (onnx2tf: run in LiteRT; onnx2torch: in PyTorch), compared;
                   exit 1 while the bug reproduces
    REPORT.md      ready to paste: tool versions, the ops left, the figures, the settings
"""

from __future__ import annotations

import json
import os

import numpy as np

from fwconv.manifest import tool_versions
from fwconv.staging import staged_outputs

TOOLS = {"onnx2tf": ("onnx2tf", "tensorflow", "tf-keras", "onnx", "onnxruntime", "ai-edge-litert", "numpy"),
         "onnx2torch": ("onnx2torch", "torch", "onnx", "onnxruntime", "numpy")}
RUNTIME = {"onnx2tf": "a TFLite model", "onnx2torch": "a PyTorch module"}
INSTALL = {"onnx2tf": "onnx2tf onnx onnxruntime ai-edge-litert numpy", "onnx2torch": "onnx2torch torch onnx numpy"}


def write_bundle(reduction, converter: str, settings: dict, out_dir: str, *, force: bool, protected=()) -> str:
    """Write the bundle for `reduction` by `converter` to `out_dir` (staged: all of it or nothing)."""
    import onnx

    from fwconv.convert.reduce import repro_module

    with staged_outputs([out_dir], force=force, protected=protected) as temps:
        folder = temps[out_dir]
        os.makedirs(folder)
        onnx.save(reduction.model, os.path.join(folder, "minimal.onnx"))
        np.savez(os.path.join(folder, "inputs.npz"), **reduction.feeds)
        np.savez(os.path.join(folder, "expected.npz"), **{f"output_{k}": v for k, v in enumerate(reduction.expected)})
        source = open(repro_module(converter).__file__, encoding="utf-8").read()
        source = source.replace("SETTINGS: dict = {}", f"SETTINGS: dict = {dict(sorted(settings.items()))!r}", 1)
        with open(os.path.join(folder, "repro.py"), "w", encoding="utf-8") as f:
            f.write(source)
        with open(os.path.join(folder, "REPORT.md"), "w", encoding="utf-8") as f:
            f.write(report_text(reduction, converter, settings))
    return out_dir


def ops_left(model) -> list[str]:
    """Each node of the minimal graph as `OpType(attr=value, ...)`."""
    import onnx

    shown = []
    for node in model.graph.node:
        attrs = ", ".join(f"{a.name}={_short(onnx.helper.get_attribute_value(a))}" for a in node.attribute)
        shown.append(f"{node.op_type}({attrs})")
    return shown


def _short(value) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list) and len(value) > 8:
        return f"[{', '.join(map(str, value[:8]))}, ...]"
    return str(value) if not hasattr(value, "dims") else f"tensor{list(value.dims)}"


def known_repairs(model, converter: str) -> list[str]:
    """fwconv's repairs for this converter aimed at the ops left (convert/repair.py): a workaround."""
    from fwconv.convert.repair import REPAIRS

    target = {"onnx2tf": "tflite", "onnx2torch": "torch"}[converter]
    ops = {n.op_type.lower() for n in model.graph.node}
    return [f"`{r.name}` (avoids {r.why})" for r in REPAIRS if ops & set(r.ops) and ("onnx", target) in r.edges]


def report_text(reduction, converter: str, settings: dict) -> str:
    model = reduction.model
    opset = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    ops = ops_left(model)
    shapes = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in reduction.feeds.items())
    versions = "\n".join(f"- {name} {version}" for name, version in tool_versions(*TOOLS[converter]).items())
    repairs = known_repairs(model, converter)
    lines = [
        f"# {converter}: {', '.join(n.split('(')[0] for n in ops)} (opset {opset}) converts to {RUNTIME[converter]} "
        f"that does not match ONNX Runtime",
        "",
        f"A {len(ops)}-node ONNX graph (reduced from {reduction.start_nodes} nodes by re-converting each cut) gives "
        f"a different result after `{converter}.convert` than in ONNX Runtime: {reduction.line}.",
        "", "## Reproduce", "", "```bash", f"pip install {INSTALL[converter]}",
        "python repro.py   # prints the mismatch; exit 1 while the bug reproduces", "```", "",
        "`minimal.onnx` is the graph, `inputs.npz` its inputs, `expected.npz` ONNX Runtime's outputs.", "",
        "## The graph", "", *[f"- `{op}`" for op in ops], f"- inputs: {shapes}", f"- opset: {opset}", "",
        "## Converter settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```", "",
        "## Versions", "", versions, ""]
    if repairs:
        lines += ["## Known workaround", "", "fwconv's repairs aimed at these ops: " + "; ".join(repairs) + ".", ""]
    return "\n".join(lines)
