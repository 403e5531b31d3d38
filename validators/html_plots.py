"""Plotly figures for the HTML reports (validators/html_report.py assembles the page).

Each builder returns one figure as a `<div>` plus its `Plotly.newPlot` call; plotly.js itself is
inlined once per page (`plotly_js`), so a report is one offline file. Plotly serialises data as
JSON with `<`, `>` and `/` escaped, so model-derived strings never reach the page's script raw;
the text plotly draws (hover, titles) is html-escaped too, since plotly reads a few tags in it.
A builder returns None when it has nothing to draw; the page says so instead.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

BLUE, RED, GREEN, GREY = "#636efa", "#EF553B", "#00cc96", "#7f7f7f"
LEGEND_TOP = {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"}
LOG_FLOOR = 1e-12  # a zero error on a log axis is drawn here (the hover says the real value)


def _go():
    from fwconv.errors import require

    return require("plotly.graph_objects", "report")


def plotly_js() -> str:
    """The plotly.js bundle the installed plotly ships (no CDN: the report must work offline)."""
    from fwconv.errors import require

    return require("plotly.offline", "report").get_plotlyjs()


def fig_div(fig, div_id: str, height: int = 420) -> str:
    fig.update_layout(height=height, margin={"l": 70, "r": 40, "t": 60, "b": 50})
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _num(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec) if isinstance(x, (int, float)) else escape(str(x))


def _op(side: dict | None) -> str:
    side = side or {}
    return escape(f"{side.get('op') or side.get('tensor') or '?'} ({side.get('op_type') or '?'})")


def _log_y(values: list) -> list[float]:
    """Errors as a log axis can show them: zero/None at LOG_FLOOR, inf capped."""
    return [min(max(float(v), LOG_FLOOR), 1e12) if isinstance(v, (int, float)) and not math.isnan(v) else LOG_FLOOR
            for v in values]


def _pair_hover(p: dict) -> str:
    return (f"#{p.get('index')} {_op(p.get('reference'))}<br>↔ {_op(p.get('candidate'))}"
            f"<br>paired by: {escape(str(p.get('how')))}<br>scaled err: {_num(p.get('scaled_max_err'))}"
            f"<br>max abs: {_num(p.get('max_abs_err'))}<br>cosine: {_num(p.get('cosine'), '.6f')}")


def error_curve(pairs: list[dict], tolerance: dict, first: dict | None) -> str | None:
    """Scaled max error per pair in reference-graph order (log y), cosine below it, the
    tolerance line and the first divergence marked."""
    if not pairs:
        return None
    go = _go()
    from plotly.subplots import make_subplots

    x = [p.get("index", i) for i, p in enumerate(pairs)]
    hover = [_pair_hover(p) for p in pairs]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.06)
    colors = [BLUE if p.get("within_tolerance") else RED for p in pairs]
    fig.add_trace(go.Scatter(x=x, y=_log_y([p.get("scaled_max_err") for p in pairs]), mode="lines+markers",
                             name="scaled max error", line={"color": BLUE}, marker={"color": colors, "size": 7},
                             hovertext=hover, hoverinfo="text"), row=1, col=1)
    isolated = [(xi, p["isolated"]) for xi, p in zip(x, pairs) if p.get("isolated")]
    if isolated:
        fig.add_trace(go.Scatter(x=[xi for xi, _ in isolated], y=_log_y([d.get("scaled_max_err") for _, d in isolated]),
                                 mode="lines+markers", name="isolated (reference inputs)",
                                 line={"color": GREEN, "dash": "dash"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[p.get("cosine") for p in pairs], mode="lines+markers", name="cosine",
                             line={"color": GREY}, hovertext=hover, hoverinfo="text"), row=2, col=1)
    atol = (tolerance or {}).get("scaled_max_err")  # the default rule on this scaled axis (None: absolute --atol)
    if isinstance(atol, (int, float)) and atol > 0:  # a trace, not add_hline: its label misplaces on log axes
        fig.add_trace(go.Scatter(x=[min(x), max(x)], y=[atol, atol], mode="lines", name=f"tolerance {atol:.3g}",
                                 line={"color": "black", "dash": "dash", "width": 1}, hoverinfo="name"), row=1, col=1)
    if first is not None:
        _mark_first(fig, go, pairs, first)
    fig.update_yaxes(type="log", title_text="max |err| / max |ref|", row=1, col=1)
    fig.update_yaxes(title_text="cosine", row=2, col=1)
    fig.update_xaxes(title_text="pair (reference graph order)", row=2, col=1)
    fig.update_layout(title="Error along the graph", legend=LEGEND_TOP)
    return fig_div(fig, "fw-error-curve", 560)


def _mark_first(fig, go, pairs: list[dict], first: dict) -> None:
    i = first.get("pair")
    pair = pairs[i] if isinstance(i, int) and 0 <= i < len(pairs) else None
    x = pair.get("index", i) if pair else i
    if x is None:
        return
    fig.add_vline(x=x, line={"color": RED, "dash": "dot", "width": 2})
    y = _log_y([(pair or first.get("metrics") or {}).get("scaled_max_err")])
    fig.add_trace(go.Scatter(x=[x], y=y, mode="markers", name="first divergence",
                             marker={"symbol": "star", "size": 18, "color": RED, "line": {"color": "black", "width": 1}},
                             hovertext=[f"first divergence<br>{_op(first.get('reference'))}<br>↔ "
                                        f"{_op(first.get('candidate'))}"], hoverinfo="text"), row=1, col=1)


def _step_xy(hist: dict) -> tuple[list[float], list[int]] | None:
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if len(edges) != len(counts) + 1 or not counts:
        return None
    return list(edges), list(counts) + [counts[-1]]


def error_histograms(outputs: list[dict], div_id: str = "fw-histograms") -> str | None:
    """|cand - ref| per output as step curves; log x when every histogram is log-binned."""
    go = _go()
    fig, log = go.Figure(), True
    for out in outputs:
        hist = out.get("histogram")
        xy = _step_xy(hist) if isinstance(hist, dict) else None
        if xy is None:
            continue
        log = log and bool(hist.get("log")) and xy[0][0] > 0
        zeros = hist.get("zeros") or 0
        name = escape(str(out.get("name"))) + (f" ({zeros} exactly equal)" if zeros else "")
        fig.add_trace(go.Scatter(x=xy[0], y=xy[1], mode="lines", line_shape="hv", fill="tozeroy", name=name))
    if not fig.data:
        return None
    fig.update_xaxes(type="log" if log else "linear", title_text="|candidate − reference|")
    fig.update_yaxes(title_text="elements")
    fig.update_layout(title="Error histograms of the outputs", showlegend=True)
    return fig_div(fig, div_id, 380)


def latency_distributions(sides: dict[str, list[float]], div_id: str = "fw-latency") -> str | None:
    """One box (every run shown as a point) per side."""
    go = _go()
    fig = go.Figure()
    for (side, samples), color in zip(sides.items(), (BLUE, RED, GREEN, GREY)):
        if samples:
            fig.add_trace(go.Box(y=list(samples), name=escape(str(side)), boxpoints="all", jitter=0.4, pointpos=0,
                                 marker={"color": color, "size": 5}, line={"color": color}))
    if not fig.data:
        return None
    fig.update_yaxes(title_text="ms per inference", rangemode="tozero")
    fig.update_layout(title="Latency distributions", showlegend=False)
    return fig_div(fig, div_id, 380)


def _grid(values: Any) -> list[list] | None:
    """A 2-D list of numbers (a 1-D preview becomes one row)."""
    if not isinstance(values, list) or not values:
        return None
    return values if isinstance(values[0], list) else [values]


def _difference(ref: list[list], cand: list[list]) -> list[list] | None:
    if len(ref) != len(cand) or any(len(a) != len(b) for a, b in zip(ref, cand)):
        return None
    return [[None if a is None or b is None else b - a for a, b in zip(ra, rb)] for ra, rb in zip(ref, cand)]


def tensor_heatmaps(preview: dict | None) -> str | None:
    """Reference, candidate and their difference side by side, ref/cand on one colour scale."""
    ref, cand = _grid((preview or {}).get("reference")), _grid((preview or {}).get("candidate"))
    if ref is None or cand is None:
        return None
    go = _go()
    from plotly.subplots import make_subplots

    diff = _difference(ref, cand)
    titles = ["reference", "candidate"] + (["candidate − reference"] if diff is not None else [])
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.12)
    fig.add_trace(go.Heatmap(z=ref, coloraxis="coloraxis"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=cand, coloraxis="coloraxis"), row=1, col=2)
    if diff is not None:
        fig.add_trace(go.Heatmap(z=diff, coloraxis="coloraxis2"), row=1, col=3)
    bar = {"len": 0.9, "thickness": 14, "xanchor": "left"}
    fig.update_layout(coloraxis={"colorscale": "Viridis", "colorbar": {**bar, "x": 0.635 if diff else 1.01}},
                      coloraxis2={"colorscale": "RdBu", "cmid": 0, "colorbar": {**bar, "x": 1.01}},
                      title=f"First divergence: {escape(str(preview.get('where') or 'tensor slice'))}")
    fig.update_yaxes(autorange="reversed")
    return fig_div(fig, "fw-tensors", 420)


def gate_latency(jobs: list[tuple[str, float | None, float | None]]) -> str | None:
    """p50 per job: reference and candidate bars side by side."""
    jobs = [j for j in jobs if j[1] is not None or j[2] is not None]
    if not jobs:
        return None
    go = _go()
    names = [escape(j[0]) for j in jobs]
    fig = go.Figure([go.Bar(x=names, y=[j[1] for j in jobs], name="reference p50", marker_color=BLUE),
                     go.Bar(x=names, y=[j[2] for j in jobs], name="candidate p50", marker_color=RED)])
    fig.update_layout(barmode="group", title="Latency per job (p50)", yaxis_title="ms per inference")
    return fig_div(fig, "fw-gate-latency", 400)
