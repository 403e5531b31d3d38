"""The debugger's typed result (schema `fwconv.debug` v1) and its terminal table."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

DEBUG_SCHEMA_VERSION = 1
PREVIEW_SIZE = 64


@dataclasses.dataclass
class PairResult:
    index: int
    reference: dict[str, Any]  # Intermediate.describe()
    candidate: dict[str, Any]
    how: str
    transpose: list[int] | None
    shape: list[int]
    metrics: dict[str, Any]
    within_tolerance: bool
    isolated: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        keys = ("max_abs_err", "max_rel_err", "scaled_max_err", "cosine", "snr_db")
        return {"index": self.index, "reference": self.reference, "candidate": self.candidate, "how": self.how,
                "transpose": self.transpose, "shape": self.shape, **{k: self.metrics.get(k) for k in keys},
                "within_tolerance": self.within_tolerance, "isolated": self.isolated}


@dataclasses.dataclass
class Divergence:
    pair: int
    span: list[str]  # reference ops between the last agreeing tensors and this one (fused in the candidate)
    candidate_span: list[str]  # candidate ops there that the reference does not have
    preview: dict[str, Any] | None

    def to_dict(self, pairs: list[PairResult]) -> dict[str, Any]:
        p = pairs[self.pair]
        keys = ("max_abs_err", "scaled_max_err", "cosine", "snr_db")
        return {"pair": self.pair, "reference": p.reference, "candidate": p.candidate, "span": self.span,
                "candidate_span": self.candidate_span,
                "metrics": {k: p.metrics.get(k) for k in keys}, "preview": self.preview}


@dataclasses.dataclass
class DebugReport:
    reference: dict[str, Any]
    candidate: dict[str, Any]
    tolerance: dict[str, Any]
    mode: str
    pairs: list[PairResult]
    unpaired: dict[str, int]
    first_divergence: Divergence | None
    validation: Any  # the ValidationReport of the final outputs (metrics, histograms, latency)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def status(self) -> str:
        diverged = self.first_divergence is not None or not self.validation.parity_passed
        return "diverged" if diverged else "clean"

    def to_dict(self) -> dict[str, Any]:
        outputs = [{"name": o.name, **{k: o.metrics.get(k) for k in ("max_abs_err", "scaled_max_err", "cosine", "snr_db")},
                    "passed": o.passed, "histogram": o.histogram} for o in self.validation.outputs]
        return {
            "schema": "fwconv.debug", "schema_version": DEBUG_SCHEMA_VERSION, "status": self.status,
            "reference": self.reference, "candidate": self.candidate, "tolerance": self.tolerance, "mode": self.mode,
            "pairs": [p.to_dict() for p in self.pairs], "unpaired": self.unpaired,
            "first_divergence": self.first_divergence.to_dict(self.pairs) if self.first_divergence else None,
            "outputs": outputs, "latency": {k: v.to_dict() for k, v in self.validation.latency.items()},
            "notes": self.notes,
        }


def preview(ref: np.ndarray, cand: np.ndarray) -> dict[str, Any] | None:
    """2-D slices (at most 64x64, reference layout) through the element with the largest error."""
    if ref.size == 0 or ref.ndim == 0:
        return None
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cand, dtype=np.float64)
    if r.ndim == 1:
        r, c = r[None, :], c[None, :]
    worst = np.unravel_index(int(np.nanargmax(np.abs(c - r))), r.shape)
    lead = tuple(int(i) for i in worst[:-2])
    rows, cols = worst[-2], worst[-1]
    r0 = max(0, min(rows - PREVIEW_SIZE // 2, r.shape[-2] - PREVIEW_SIZE))
    c0 = max(0, min(cols - PREVIEW_SIZE // 2, r.shape[-1] - PREVIEW_SIZE))
    window = lead + (slice(r0, r0 + PREVIEW_SIZE), slice(c0, c0 + PREVIEW_SIZE))
    clean = lambda a: np.nan_to_num(a[window], nan=0.0, posinf=0.0, neginf=0.0).round(6).tolist()
    where = f"index {list(lead)} of the leading dims, rows {r0}.., cols {c0}.. (largest error at {[int(i) for i in worst]})"
    return {"where": where, "reference": clean(r), "candidate": clean(c)}


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))


def _short(text: str, limit: int = 60) -> str:
    """Converters make tensor names hundreds of characters long: the table keeps their ends."""
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def _side(d: dict[str, Any]) -> str:
    extra = f" [{d['module']}]" if d.get("module") else ""
    return f"{_short(d['op'])} ({d['op_type']}){extra}"


def to_text(report: DebugReport, top: int = 10) -> str:
    """The first divergence (both sides named), then the worst pairs in graph order."""
    lines = [f"reference: {report.reference['model']} ({report.reference['runtime']}); "
             f"candidate: {report.candidate['model']} ({report.candidate['runtime']})",
             f"{len(report.pairs)} tensor pairs ({report.unpaired['reference']} reference and "
             f"{report.unpaired['candidate']} candidate tensors unpaired), mode: {report.mode}"]
    d = report.first_divergence
    if d is None:
        lines.append("first divergence: none (every paired tensor is within tolerance)")
    else:
        p = report.pairs[d.pair]
        lines += [f"FIRST DIVERGENCE at pair {d.pair}: scaled max err {_fmt(p.metrics.get('scaled_max_err'))}, "
                  f"cosine {_fmt(p.metrics.get('cosine'))}",
                  f"  reference: {_side(p.reference)}" + (f" at {p.reference['source']}" if p.reference.get("source") else ""),
                  f"  candidate: {_side(p.candidate)}, tensor '{_short(p.candidate['tensor'], 80)}'"]
        if d.span:
            lines.append(f"  reference ops the candidate computes inside it: {', '.join(d.span)}")
        if d.candidate_span:
            lines.append(f"  candidate ops with no reference counterpart before it: {', '.join(d.candidate_span)}")
    worst = sorted(report.pairs, key=lambda p: -(p.metrics.get("scaled_max_err") or 0))[:top]
    lines.append(f"{'#':>4}  {'scaled err':>10}  {'cosine':>8}  ok  reference -> candidate (how paired)")
    for p in sorted(worst, key=lambda p: p.index):
        mark = "!" if d is not None and p.index == d.pair else " "
        lines.append(f"{p.index:>4}{mark} {_fmt(p.metrics.get('scaled_max_err')):>10}  {_fmt(p.metrics.get('cosine')):>8}  "
                     f"{'ok' if p.within_tolerance else 'NO'}  {_side(p.reference)} -> {_side(p.candidate)} ({p.how})")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def write_debug_reports(report: DebugReport, *, json_path=None, html_path=None, explorer_path=None,
                        force: bool = False, protected=()) -> list[str]:
    """Each requested file by fwconv's output rules (staged, --force to replace, never an input)."""
    import json

    from fwconv.staging import write_text
    from fwconv.validators.debug.explorer import to_json as explorer_json

    data = report.to_dict()

    def html(d):
        from fwconv.validators.html_report import debug_html

        return debug_html(d)

    written = []
    for path, render in ((json_path, lambda d: json.dumps(d, indent=1, default=float)), (html_path, html),
                         (explorer_path, explorer_json)):
        if path:
            write_text(path, render(data), force=force, protected=protected)
            written.append(path)
    return written
