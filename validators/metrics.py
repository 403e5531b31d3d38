"""Per-output parity metrics and the pass/fail rule.

Pass rule for fp32 (per element, like numpy.allclose and Polygraphy): |cand - ref| <= atol +
rtol*|ref|, with defaults scaled by the output's own magnitude (`scale` = max |ref|), because a
fixed absolute atol is meaningless across models whose outputs live at 1e-3 or 1e3, plus cosine
and SNR floors. `--atol/--rtol` given by the user are absolute.

Quantized candidates (fp16, int8/dynamic) are judged by distribution metrics instead: cosine and
SNR floors, and for score-like outputs task-level agreement (the reference's top-1 class must be
in the candidate's top-k on every row). Rounding spreads a small error over every element, and
the worst single element of a good fp16 MobileNetV2 is several % of the scale (an element-wise
1e-2 refused it at cosine 0.99998), while a wrong model moves the whole distribution. The floors
are measured (README, Validation: scripts/measure_quantization.py): good conversions of real CNNs
pass, planted faults (a perturbed weight, a different model) fail. `--atol/--rtol` still add an
element-wise check on top.

Definitions, so a test can recompute them with numpy:
  diff = cand - ref (float64); scale = max|ref| (1 if that is 0)
  max_abs_err = max|diff|; mean_abs_err = mean|diff|; rmse = sqrt(mean(diff^2))
  max_rel_err = max(|diff| / max(|ref|, 1e-3*scale))  (floored so near-zero refs don't explode)
  scaled_max_err = max_abs_err / scale
  cosine = <ref, cand> / (|ref| |cand|);  snr_db = 10 log10(sum ref^2 / sum diff^2)
  min_atol_to_pass = max(0, max(|diff| - rtol*|ref|))
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

# precision -> atol relative to scale, rtol, min cosine, min SNR dB, and whether score-like outputs
# must keep the reference's top-1 in the candidate's top-k (task-level agreement)
DEFAULT_TOLERANCES = {
    "fp32": {"atol_scaled": 1e-4, "rtol": 1e-4, "min_cosine": 0.9999, "min_snr_db": 60.0, "task": False},
    "fp16": {"atol_scaled": None, "rtol": None, "min_cosine": 0.999, "min_snr_db": 30.0, "task": True},
    "int8": {"atol_scaled": None, "rtol": None, "min_cosine": 0.97, "min_snr_db": 12.0, "task": True},
}


@dataclasses.dataclass
class Tolerance:
    precision: str = "fp32"
    atol: float | None = None  # absolute; None -> default scaled by the output's magnitude
    rtol: float | None = None
    min_cosine: float | None = None  # a target (--min-cosine) replacing the precision's cosine floor

    def resolved(self, scale: float) -> dict[str, float | None]:
        d = DEFAULT_TOLERANCES[self.precision]
        atol = self.atol if self.atol is not None else (d["atol_scaled"] * scale if d["atol_scaled"] is not None else None)
        rtol = self.rtol if self.rtol is not None else d["rtol"]
        if atol is not None and rtol is None:
            rtol = 0.0
        # Explicit --atol/--rtol govern on their own: the default cosine/SNR floors then step
        # aside (they still apply when given, and always for int8, which has no atol default).
        user_set = (self.atol is not None or self.rtol is not None) and d["atol_scaled"] is not None
        return {
            "atol": atol, "rtol": rtol,
            "min_cosine": self.min_cosine if self.min_cosine is not None else (None if user_set else d["min_cosine"]),
            "min_snr_db": None if user_set else d["min_snr_db"],
            "task_top1_in_topk": d["task"],
        }


@dataclasses.dataclass
class OutputParity:
    name: str
    shape: list[int]
    dtype: str
    passed: bool
    metrics: dict[str, Any]
    tolerance: dict[str, Any]
    failure: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    worst: dict[str, Any] = dataclasses.field(default_factory=dict)
    sample: int = 0
    histogram: dict[str, Any] | None = None  # of |cand - ref| (error_histogram), for the HTML report

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite(x: float) -> float | None:
    return None if (x is None or math.isnan(x)) else (x if math.isfinite(x) else (1e308 if x > 0 else -1e308))


def looks_like_scores(shape: tuple[int, ...]) -> bool:
    """[N, C] or [C] float outputs with C >= 2: argmax/top-k agreement is meaningful."""
    return 1 <= len(shape) <= 2 and shape[-1] >= 2


def degenerate_warnings(ref: np.ndarray) -> list[str]:
    if ref.size == 0:
        return ["reference output is empty"]
    r = ref.astype(np.float64)
    finite = r[np.isfinite(r)]
    if finite.size == 0:
        return []
    peak = float(np.max(np.abs(finite)))
    if peak == 0.0:
        return ["reference output is all zeros: parity on it proves nothing"]
    if finite.size > 1 and float(np.ptp(finite)) == 0.0:
        return ["reference output is constant: parity on it proves nothing"]
    if peak < 1e-30:
        return ["reference output is denormal-small: parity on it proves nothing"]
    if finite.size > 1 and float(np.std(finite)) < 1e-6 * peak:
        return ["reference output is nearly constant: parity on it proves little"]
    return []


def compare_arrays(name: str, ref: np.ndarray, cand: np.ndarray, tol: Tolerance, *, topk: int = 5,
                   sample: int = 0) -> OutputParity:
    """Compare one output. A shape or dtype-kind mismatch is a failure, never reshaped away."""
    ref = np.asarray(ref)
    cand = np.asarray(cand)
    if ref.shape != cand.shape:
        return OutputParity(name, list(ref.shape), ref.dtype.name, False, {}, {},
                            failure=f"shape mismatch: reference {list(ref.shape)} vs candidate {list(cand.shape)}",
                            sample=sample)
    r, c = ref.astype(np.float64), cand.astype(np.float64)
    metrics, absdiff = _error_metrics(r, c)
    if looks_like_scores(ref.shape) and np.issubdtype(ref.dtype, np.floating):
        metrics.update(_agreement(r, c, ref.shape[-1], topk))
    limits = tol.resolved(metrics["scale"])
    failure = _failure(metrics, absdiff, r, limits)
    worst: dict[str, Any] = {}
    if absdiff.size:
        idx = np.unravel_index(int(np.argmax(absdiff)), absdiff.shape)
        worst = {"index": [int(i) for i in idx], "reference": float(r[idx]), "candidate": float(c[idx])}
    metrics = {k: (_finite(v) if isinstance(v, float) else v) for k, v in metrics.items() if not k.startswith("_")}
    return OutputParity(name, list(ref.shape), ref.dtype.name, failure is None, metrics,
                        {"precision": tol.precision, **limits}, failure, degenerate_warnings(ref), worst, sample,
                        error_histogram(absdiff))


def error_histogram(absdiff: np.ndarray, bins: int = 40) -> dict[str, Any] | None:
    """Counts of |cand - ref| in `bins` bins, log-spaced when the errors span more than a decade
    (errors live at 1e-7 and 1e-1 in the same tensor), so the report can show how errors are
    spread, not just the worst one. Exact zeros are counted apart: a log axis has no 0.
    {"edges": [bins+1], "counts": [bins], "zeros": n, "log": bool}; None for an empty tensor."""
    flat = np.asarray(absdiff, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return None
    positive = flat[flat > 0]
    zeros = int(flat.size - positive.size)
    if positive.size == 0:
        return {"edges": [0.0, 1.0], "counts": [0], "zeros": zeros, "log": False}
    low, high = float(positive.min()), float(positive.max())
    log = high > 10 * low
    if log:
        edges = np.logspace(np.log10(low), np.log10(high), bins + 1)
        edges[0], edges[-1] = low, high  # exact ends: float rounding must not drop the extremes
    else:
        edges = np.linspace(0.0, high, bins + 1)
    counts, edges = np.histogram(positive, bins=edges)
    return {"edges": [float(f"{e:.6g}") for e in edges], "counts": [int(c) for c in counts], "zeros": zeros,
            "log": bool(log)}


def _error_metrics(r: np.ndarray, c: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Element-wise and distribution errors over the elements finite on both sides (float64)."""
    metrics: dict[str, Any] = {
        "ref_nan": int(np.isnan(r).sum()), "ref_inf": int(np.isinf(r).sum()),
        "cand_nan": int(np.isnan(c).sum()), "cand_inf": int(np.isinf(c).sum()),
    }
    both_finite = np.isfinite(r) & np.isfinite(c)
    diff = np.where(both_finite, c - r, 0.0)
    absdiff = np.abs(diff)
    finite_ref = r[np.isfinite(r)]
    scale = float(np.max(np.abs(finite_ref))) if finite_ref.size else 1.0
    scale = scale if scale > 0 else 1.0
    sum_ref2 = float(np.sum(np.where(both_finite, r, 0.0) ** 2))
    sum_d2 = float(np.sum(diff ** 2))
    n = max(int(both_finite.sum()), 1)
    norm = math.sqrt(sum_ref2) * math.sqrt(float(np.sum(np.where(both_finite, c, 0.0) ** 2)))
    metrics.update({
        "scale": scale,
        "max_abs_err": float(absdiff.max()) if absdiff.size else 0.0,
        "mean_abs_err": float(absdiff.sum() / n),
        "rmse": math.sqrt(sum_d2 / n),
        "max_rel_err": float((absdiff / np.maximum(np.abs(r), 1e-3 * scale)).max()) if absdiff.size else 0.0,
        "cosine": float(np.sum(np.where(both_finite, r * c, 0.0)) / norm) if norm > 0 else (1.0 if sum_d2 == 0 else 0.0),
        "snr_db": (10 * math.log10(sum_ref2 / sum_d2)) if sum_d2 > 0 and sum_ref2 > 0 else (math.inf if sum_d2 == 0 else -math.inf),
        "_sum_ref2": sum_ref2,  # internal: whether cosine/SNR say anything (dropped from the report)
    })
    metrics["scaled_max_err"] = metrics["max_abs_err"] / scale
    return metrics, absdiff


def _agreement(r: np.ndarray, c: np.ndarray, classes: int, topk: int) -> dict[str, float]:
    """Task-level agreement for score-like outputs: argmax and top-k overlap per row."""
    r2, c2 = r.reshape(-1, classes), c.reshape(-1, classes)
    k = min(topk, classes)
    top_r, top_c = np.argsort(-r2, -1)[:, :k], np.argsort(-c2, -1)[:, :k]
    # k for the task check: at most half the classes, or "in the top-k" says nothing on few classes
    kt = max(1, min(topk, classes // 2))
    return {"argmax_agreement": float(np.mean(np.argmax(r2, -1) == np.argmax(c2, -1))),
            f"top{k}_overlap": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_r, top_c)])),
            "top1_in_topk": float(np.mean([a[0] in b[:kt] for a, b in zip(top_r, np.argsort(-c2, -1))])),
            "topk_for_task": kt}


def _failure(metrics: dict[str, Any], absdiff: np.ndarray, r: np.ndarray, limits: dict) -> str | None:
    """The first criterion the candidate fails (NaN/Inf, element-wise, cosine, SNR), or None."""
    failure = None
    if metrics["cand_nan"] > metrics["ref_nan"] or metrics["cand_inf"] > metrics["ref_inf"]:
        failure = f"candidate has NaN/Inf where the reference is finite (nan={metrics['cand_nan']}, inf={metrics['cand_inf']})"
    if limits["atol"] is not None:
        allowed = limits["atol"] + limits["rtol"] * np.abs(r)
        excess = absdiff - limits["rtol"] * np.abs(r)
        metrics["min_atol_to_pass"] = float(max(0.0, excess.max())) if excess.size else 0.0
        if failure is None and absdiff.size and np.any(absdiff > allowed):
            bad = int(np.sum(absdiff > allowed))
            failure = (f"{bad} of {absdiff.size} elements exceed atol={limits['atol']:.3g} + rtol={limits['rtol']:.3g}*|ref| "
                       f"(max_abs_err={metrics['max_abs_err']:.3g})")
    informative = metrics["_sum_ref2"] > 0
    if failure is None and limits["min_cosine"] is not None and informative and metrics["cosine"] < limits["min_cosine"]:
        failure = f"cosine similarity {metrics['cosine']:.6f} < {limits['min_cosine']}"
    if failure is None and limits["min_snr_db"] is not None and informative and metrics["snr_db"] < limits["min_snr_db"]:
        failure = f"SNR {metrics['snr_db']:.1f} dB < {limits['min_snr_db']} dB"
    if failure is None and limits.get("task_top1_in_topk") and metrics.get("top1_in_topk", 1.0) < 1.0:
        failure = (f"task-level agreement: the reference's top-1 class is outside the candidate's top-"
                   f"{metrics['topk_for_task']} on {1 - metrics['top1_in_topk']:.0%} of rows")
    return failure
