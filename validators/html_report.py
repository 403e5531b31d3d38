"""Self-contained HTML reports for `fwconv debug`, `validate` and `gate`: one file, plotly.js
inlined once, no network, so a report can be attached to a CI run or mailed and still open.

Every string that comes from a model file (tensor, op and output names) or from the user is
html-escaped here; the plots (validators/html_plots.py) get their data through plotly's JSON.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fwconv.validators import html_plots as plots

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1320px;
color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.ok{background:#1a7f37}.bad{background:#c62828}.warn{background:#b26a00}
.fail td{background:#fdecea}.muted{color:#777}code{background:#f4f5f7;padding:0 3px}
.plot{border:1px solid #eee;margin:8px 0}
"""

GOOD = {"pass", "clean"}
WARN = {"latency_exceeded", "unsupported_op"}


def _fmt(x: Any, spec: str = ".3g") -> str:
    from fwconv.validators.report import _fmt as fmt

    return fmt(x, spec) if isinstance(x, (int, float)) and not isinstance(x, bool) else "-" if x is None else str(x)


def badge(status: Any) -> str:
    s = str(status)
    cls = "ok" if s in GOOD else "warn" if s in WARN else "bad"
    return f'<span class="badge {cls}">{escape(s.replace("_", " ").upper())}</span>'


# a column's number format, by its header (cosine needs its 6 decimals: 0.999994 is not 1)
SPECS = {"cosine": ".6f", "SNR dB": ".1f"}


def _cell(value: Any, spec: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num">{escape(_fmt(value, spec))}</td>'
    return f"<td>{escape(_fmt(value))}</td>"


def table(headers: list[str], rows: list[list[Any]], *, failed: list[bool] | None = None) -> str:
    """An HTML table; every cell escaped, numbers right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    specs = [SPECS.get(h, ".3g") for h in headers]
    body = []
    for i, row in enumerate(rows):
        cells = "".join(_cell(c, spec) for c, spec in zip(row, specs))
        cls = ' class="fail"' if failed and failed[i] else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def section(title: str, *parts: str | None, empty: str = "nothing to show") -> str:
    """A titled part of the page; the `empty` line where no part has content (a plot builder
    returned None), so a report never has a silent gap."""
    content = [p for p in parts if p]
    inner = "".join(f'<div class="plot">{p}</div>' if p.lstrip().startswith("<div") else p for p in content)
    return f"<h2>{escape(title)}</h2>" + (inner or f'<p class="muted">{escape(empty)}</p>')


def page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style>"
            f"<script type=\"text/javascript\">{plots.plotly_js()}</script></head><body>"
            + "\n".join(body) + "</body></html>\n")


def side_line(label: str, side: dict | None) -> str:
    side = side or {}
    extras = ", ".join(escape(str(side[k])) for k in ("format", "runtime", "device") if side.get(k))
    return f"<div><b>{escape(label)}:</b> <code>{escape(str(side.get('model', '?')))}</code> " \
           f"<span class=\"muted\">{extras}</span></div>"


def notes_list(notes: list[Any] | None, title: str = "Notes") -> str | None:
    if not notes:
        return None
    return f"<h2>{escape(title)}</h2><ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>"


def latency_samples(latency: dict | None) -> dict[str, list[float]]:
    return {side: list((stats or {}).get("samples_ms") or []) for side, stats in (latency or {}).items()}


def latency_table(latency: dict | None) -> str | None:
    keys = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "runs")
    rows = [[side] + [(stats or {}).get(k) for k in keys] for side, stats in (latency or {}).items()]
    return table(["side", "p50 ms", "p90 ms", "p99 ms", "mean ms", "min ms", "max ms", "runs"], rows) if rows else None


# -- the three reports ---------------------------------------------------------------------------

def debug_html(report: dict) -> str:
    """The layerwise debugger's report (schema fwconv.debug v1): where the candidate leaves the
    reference, and what the tensors look like there."""
    from fwconv.validators.html_debug import debug_body

    return page("fwconv debug", debug_body(report))


def validation_html(report: dict) -> str:
    """`ValidationReport.to_dict()`: parity per output, how errors are spread, latency of both sides."""
    outputs = report.get("outputs") or []
    rows = [[o.get("name"), "PASS" if o.get("passed") else "FAIL"]
            + [(o.get("metrics") or {}).get(k) for k in ("max_abs_err", "max_rel_err", "scaled_max_err", "cosine",
                                                         "snr_db", "min_atol_to_pass")] for o in outputs]
    ratio = report.get("latency_ratio")
    body = [f"<h1>fwconv validate {badge(report.get('status'))}</h1>",
            side_line("reference", report.get("reference")), side_line("candidate", report.get("candidate")),
            f"<div class=\"muted\">{escape(str(report.get('samples')))} sample(s), seed "
            f"{escape(str(report.get('seed')))}</div>",
            section("Parity per output", table(["output", "result", "max abs", "max rel", "err/scale", "cosine",
                                                "SNR dB", "min atol"], rows,
                                               failed=[not o.get("passed") for o in outputs]),
                    empty="no outputs were compared"),
            notes_list(report.get("failures"), "Failures"),
            section("Error histograms", plots.error_histograms(outputs), empty="no error histograms in this report"),
            section("Latency", plots.latency_distributions(latency_samples(report.get("latency"))),
                    latency_table(report.get("latency")),
                    f"<p>candidate/reference p50: <b>{ratio:.2f}</b></p>" if isinstance(ratio, (int, float)) else None,
                    empty="latency was not measured"),
            notes_list(report.get("notes"))]
    return page("fwconv validate", [b for b in body if b])
