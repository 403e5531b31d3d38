"""The body of the debugger's HTML report (schema fwconv.debug v1; see validators/html_report.py).

Read defensively: a report may have no pairs, no first divergence (a clean run), no latency
and no histograms, and every name in it comes from a model file.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fwconv.validators import html_plots as plots
from fwconv.validators.html_report import (badge, latency_samples, latency_table, notes_list, section, side_line,
                                           table)

TOP = 15


def _summary(report: dict) -> str:
    tol = report.get("tolerance") or {}
    unpaired = report.get("unpaired") or {}
    rule = (f"{escape(str(tol.get('precision', '?')))} default (scaled max err {tol['scaled_max_err']:.3g})"
            if tol.get("scaled_max_err") else f"atol {escape(str(tol.get('atol')))}, rtol {escape(str(tol.get('rtol')))}")
    return (f"<div class=\"muted\">mode {escape(str(report.get('mode', '?')))}; tolerance {rule}; "
            f"{len(report.get('pairs') or [])} paired tensor(s), unpaired: reference "
            f"{escape(str(unpaired.get('reference', 0)))}, candidate {escape(str(unpaired.get('candidate', 0)))}</div>")


def _where(side: dict | None, keys: tuple[str, ...]) -> list[Any]:
    side = side or {}
    return [side.get(k) for k in keys]


def first_divergence(first: dict | None) -> str:
    """Names the op on both sides (module path and source line where the exporter kept them)."""
    if first is None:
        return "<h2>First divergence</h2><p><b>No divergence</b>: every paired tensor is within tolerance.</p>"
    keys = ("op", "op_type", "tensor", "module", "source")
    rows = [["reference"] + _where(first.get("reference"), keys), ["candidate"] + _where(first.get("candidate"), keys)]
    m = first.get("metrics") or {}
    metrics = (f"<p>scaled max error <b>{escape(plots._num(m.get('scaled_max_err')))}</b>, max abs "
               f"{escape(plots._num(m.get('max_abs_err')))}, cosine {escape(plots._num(m.get('cosine'), '.6f'))}, "
               f"SNR {escape(plots._num(m.get('snr_db'), '.1f'))} dB</p>")
    span = first.get("span") or []
    fused = (f"<p>fused into this candidate op: " + ", ".join(f"<code>{escape(str(s))}</code>" for s in span)
             + "</p>") if span else ""
    return ("<h2>First divergence</h2>" + table(["side", "op", "type", "tensor", "module", "source"], rows)
            + metrics + fused)


def _pair_row(p: dict) -> list[Any]:
    ref, cand = p.get("reference") or {}, p.get("candidate") or {}
    return [p.get("index"), f"{ref.get('op')} ({ref.get('op_type')})", f"{cand.get('op')} ({cand.get('op_type')})",
            p.get("how"), p.get("scaled_max_err"), p.get("max_abs_err"), p.get("cosine"), p.get("snr_db"),
            "yes" if p.get("within_tolerance") else "NO"]


def top_divergences(pairs: list[dict]) -> str | None:
    if not pairs:
        return None
    worst = sorted(pairs, key=lambda p: -(p.get("scaled_max_err") or 0.0))[:TOP]
    return table(["#", "reference op", "candidate op", "paired by", "err/scale", "max abs", "cosine", "SNR dB",
                  "within tol."], [_pair_row(p) for p in worst], failed=[not p.get("within_tolerance") for p in worst])


def _outputs_table(outputs: list[dict]) -> str | None:
    keys = ("max_abs_err", "scaled_max_err", "cosine", "snr_db")
    rows = [[o.get("name")] + [o.get(k) for k in keys] for o in outputs]
    return table(["output", "max abs", "err/scale", "cosine", "SNR dB"], rows) if rows else None


def debug_body(report: dict) -> list[str]:
    pairs = report.get("pairs") or []
    first = report.get("first_divergence")
    outputs = report.get("outputs") or []
    preview = (first or {}).get("preview")
    body = [f"<h1>fwconv debug {badge(report.get('status'))}</h1>",
            side_line("reference", report.get("reference")), side_line("candidate", report.get("candidate")),
            _summary(report), first_divergence(first),
            section("Error along the graph", plots.error_curve(pairs, report.get("tolerance") or {}, first),
                    empty="no intermediate tensors were paired"),
            section("First divergence: tensors side by side", plots.tensor_heatmaps(preview),
                    empty="no divergence" if first is None else "no tensor preview in this report"),
            section("Outputs", _outputs_table(outputs), plots.error_histograms(outputs),
                    empty="no outputs were compared"),
            section("Latency", plots.latency_distributions(latency_samples(report.get("latency"))),
                    latency_table(report.get("latency")), empty="latency was not measured"),
            section(f"Top divergences (worst {TOP})", top_divergences(pairs), empty="no pairs"),
            notes_list(report.get("notes"))]
    return [b for b in body if b]
