"""Selective quantization: when a full-int8 artifact fails the validator's verdict, keep the ops
that int8 hurts most in float, the fewest that make it pass.

Why it is built this way:
- The ranking is TF's own. `tf.lite.experimental.QuantizationDebugger` puts a NumericVerify op
  after every quantized op, which runs the float op on the same (dequantized) inputs: each op's
  error is its own, not the error it inherits. We rank by rmse / scale, the error in units of the
  op's quantization step (TF's debugging guide: rounding alone is 1/sqrt(12) = 0.29 steps).
- When int8 does not even run ("Node number 47 (DIV) failed to invoke": a LayerNorm's divisor
  quantized to zero), the instrumented model fails the same way and cannot rank; the runtime has
  named the op, and that op is the one kept in float.
- An op kept in float takes the ops reading its output with it: a reader that stays int8
  re-quantizes the tensor on the same range, and nothing is won.
- Re-quantizing is cheap: the debugger calibrates once on the user's calibration samples, and
  `get_nondebug_quantized_model()` re-runs only the quantizer with a denylist of op output tensor
  names (`QuantizationDebugOptions(denylisted_nodes=...)`). onnx2tf and calibration never repeat.
- The judge is the validator, against the source (not against a float .tflite), through
  `Job.check`, a callable the pipeline sets: fwconv.convert never imports fwconv.validators.
- The search is bounded and monotone: k = 1, 2, 4, ... worst ops in float, capped by
  `--max-float-ops`; the first k that passes is kept, so the artifact stays as integer as the
  target allows. Every attempt (ops, cosine, SNR, size, p50) is recorded for the manifest.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from typing import Any, Callable, Iterable

from fwconv.errors import first_line

DEFAULT_MAX_FLOAT_OPS = 16  # the search's bound (ranked ops; their readers not counted) without --max-float-ops
PER_LAYER_REPORTED = 10  # sensitivities kept in the manifest (the worst first)


def layer_sensitivity(debugger) -> list[dict[str, Any]]:
    """Every quantized op's own int8 error on the calibration samples, worst first: op type,
    output tensor (what the denylist names), rmse, scale and rmse/scale, from TF's CSV dump."""
    debugger.run()
    text = io.StringIO()
    debugger.layer_statistics_dump(text)
    rows = []
    for row in csv.DictReader(io.StringIO(text.getvalue())):
        scale = float(row["scale"] or 0.0)
        rmse = math.sqrt(max(float(row["mean_squared_error"] or 0.0), 0.0))
        rows.append({"op": row["op_name"], "tensor": row["tensor_name"], "rmse": rmse, "scale": scale,
                     "rmse_over_scale": rmse / scale if scale > 0 else math.inf})
    rows.sort(key=lambda r: -r["rmse_over_scale"])
    return rows


def failing_op(ops: list[tuple[str, str]], failure: str | None) -> list[dict[str, Any]]:
    """The op the runtime says failed ("Node number 47 (DIV) failed to invoke"), as a ranking."""
    match = re.search(r"Node number (\d+) \((\w+)\) failed", failure or "")
    if not match or int(match.group(1)) >= len(ops):
        return []
    tensor, op = ops[int(match.group(1))]
    text = first_line(failure or "")
    return [{"op": op, "tensor": tensor, "reason": text[max(text.find("tflite/"), 0):][:200]}]


def _graph(flatbuffer: bytes) -> tuple[list[tuple[str, str]], dict[str, list[tuple[str, str]]]]:
    """The op graph: (output tensor, op type) per op in execution order, and for each tensor the
    ops reading it. Read, never allocated or run."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=flatbuffer,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops: list[tuple[str, str]] = []
    readers: dict[str, list[tuple[str, str]]] = {}
    for op in interp._get_ops_details():  # the op graph, read as TF's own debugger reads it
        out = (names.get(op["outputs"][0], "?") if len(op["outputs"]) else "?", op["op_name"])
        ops.append(out)
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE"):
            for i in op["inputs"]:
                if i in names:
                    readers.setdefault(names[i], []).append(out)
    return ops, readers


def rank(debugger, flatbuffer: bytes, full_failure: str | None) -> tuple[list[dict[str, Any]], str]:
    """The ops to keep float first, and how they were ranked."""
    ops, _ = _graph(flatbuffer)
    named = failing_op(ops, full_failure)
    if named:
        return named, "the op the runtime named when full int8 failed to run"
    try:
        return layer_sensitivity(debugger), "rmse/scale per quantized op (tf.lite QuantizationDebugger, calibration samples)"
    except (RuntimeError, ValueError) as exc:  # the instrumented model does not run either
        return [], f"not ranked: TF's QuantizationDebugger failed ({first_line(exc)[:160]})"


def float_set(ranking: list[dict], k: int, readers: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """The k most sensitive ops and the ops reading their outputs, each once, in ranking order."""
    chosen: dict[str, str] = {}
    for row in ranking[:k]:
        chosen.setdefault(row["tensor"], row["op"])
        for tensor, op in readers.get(row["tensor"], []):
            chosen.setdefault(tensor, op)
    return list(chosen.items())


def _debugger(converter, dataset: Callable[[], Iterable[list]], fully_quantize: bool):
    """A QuantizationDebugger over the configured converter (it calibrates once, here)."""
    import tensorflow as tf

    options = tf.lite.experimental.QuantizationDebugOptions(fully_quantize=fully_quantize)
    return tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset,
                                                      debug_options=options)


def _requantize(debugger, float_tensors: list[str], fully_quantize: bool) -> bytes:
    """The integer model with the ops producing `float_tensors` left in float."""
    import tensorflow as tf

    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=float_tensors or None, fully_quantize=fully_quantize)
    return debugger.get_nondebug_quantized_model()


def _attempt(float_ops: list[tuple[str, str]], verdict: dict, size: int) -> dict[str, Any]:
    return {"float_ops": [t for t, _ in float_ops], "float_op_types": [o for _, o in float_ops],
            "passed": verdict["passed"], "cosine": verdict.get("cosine"), "snr_db": verdict.get("snr_db"),
            "p50_ms": verdict.get("p50_ms"), "size_bytes": size, "failure": verdict.get("failure")}


def applies(job) -> bool:
    """Full int8 with a judge (validation on). Independent of --no-repair (route repair): the
    search's own off switch is --max-float-ops 0, which still reports the per-layer numbers."""
    return job.options.quantize == "int8" and job.check is not None


def fit(converter, flatbuffer: bytes, job, template) -> tuple[bytes, dict[str, Any]]:
    """Judge the full-int8 model; if it failed, rank the ops and search. Returns (flatbuffer,
    record) with record = {"float_ops", "passed", "per_layer", "attempts", "ranked_by"} for the
    manifest's extra.quantization. Passing full int8 still gets its per-layer numbers."""
    check = _checker(job, template)
    fully = bool(job.options.int8_io)
    attempts = [_attempt([], check(flatbuffer), len(flatbuffer))]
    dataset = converter.representative_dataset  # TF wraps the generator function the edge set
    debugger = _debugger(converter, getattr(dataset, "input_gen", dataset), fully)
    ranking, how = rank(debugger, flatbuffer, attempts[0]["failure"])
    best = flatbuffer
    if not attempts[0]["passed"]:
        best = _search(debugger, ranking, _graph(flatbuffer)[1], check, attempts, (_bound(job), fully)) or best
    chosen = next((a for a in attempts if a["passed"]), attempts[-1])
    return best, {"float_ops": chosen["float_ops"], "passed": chosen["passed"], "ranked_by": how,
                  "per_layer": [_rounded(r) for r in ranking[:PER_LAYER_REPORTED]], "attempts": attempts}


def _search(debugger, ranking: list[dict], readers, check, attempts: list[dict], limits: tuple[int, bool]) -> bytes | None:
    """k = 1, 2, 4, ... ranked ops in float until one passes. A candidate that fails to run names
    its failing op: it joins the ranking next, and k grows by one instead. Returns the passing
    model, else the best-cosine one that ran (so the verdict is a parity failure, not a crash)."""
    bound, fully = limits
    best, best_cos = None, -2.0
    k = 1 if min(bound, len(ranking)) > 0 else 0
    while k:
        ops = float_set(ranking, k, readers)
        model = _requantize(debugger, [t for t, _ in ops], fully)
        attempts.append(_attempt(ops, check(model), len(model)))
        if attempts[-1]["passed"]:
            return model
        if attempts[-1]["cosine"] is not None and attempts[-1]["cosine"] > best_cos:
            best, best_cos = model, attempts[-1]["cosine"]
        named = [r for r in failing_op(_graph(model)[0], attempts[-1]["failure"]) if r["tensor"] not in dict(ops)]
        ranking[k:k] = named
        k = next_k(k, min(bound, len(ranking)), bool(named))
    return best


def next_k(k: int, top: int, named: bool) -> int:
    """After k ops in float: k + 1 when the run named one more failing op (it joined the ranking);
    else 2k, the bound `top` tried last; 0 when done."""
    if named and k < top:
        return k + 1
    return 0 if k >= top else min(2 * k, top)


def _bound(job) -> int:
    bound = getattr(job.options, "max_float_ops", None)
    return DEFAULT_MAX_FLOAT_OPS if bound is None else bound


def _checker(job, template) -> Callable[[bytes], dict]:
    """The validator's verdict (Job.check) on a flatbuffer, written with the source's I/O order."""
    import dataclasses

    from fwconv.models.tflite import set_io_order

    count = iter(range(1 << 30))

    def check(flatbuffer: bytes) -> dict:
        path = os.path.join(job.workdir, f"quant_candidate{next(count)}.tflite")
        with open(path, "wb") as f:
            f.write(flatbuffer)
        set_io_order(path, [s.name for s in template.inputs], [s.name for s in template.outputs])
        return job.check(dataclasses.replace(template, path=path, format="tflite"))
    return check


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(f"{v:.4g}") if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()}


def notes(record: dict[str, Any]) -> list[str]:
    """The artifact's notes: which ops stayed float and what that cost against full int8."""
    full, last = record["attempts"][0], record["attempts"][-1]
    if len(record["attempts"]) == 1 and record["passed"]:
        return [f"full int8 passed (cosine {full['cosine']:.4f}); per-op int8 error in the manifest "
                "(extra.quantization.per_layer)"]
    if not record["passed"]:
        return [f"selective quantization: no model with up to {len(last['float_ops'])} float ops passed "
                f"(best cosine {max((a['cosine'] or 0) for a in record['attempts']):.4f}); --max-float-ops raises the bound"]
    cost = f"size {full['size_bytes'] / 1024:.1f} -> {last['size_bytes'] / 1024:.1f} KiB"
    if full.get("p50_ms") and last.get("p50_ms"):
        cost += f", p50 {full['p50_ms']:.3f} -> {last['p50_ms']:.3f} ms"
    failure = full["failure"] or ""
    before = f"cosine {full['cosine']:.4f}" if full["cosine"] is not None else failure[max(failure.find("tflite/"), 0):]
    return [f"selective quantization: full int8 failed ({before}); "
            f"{len(last['float_ops'])} op(s) kept in float (cosine {last['cosine']:.4f}; {cost}): "
            + ", ".join(f"{t} ({o})" for t, o in zip(last["float_ops"], last["float_op_types"]))]
