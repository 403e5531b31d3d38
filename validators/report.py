"""Render a ValidationReport: terminal table, JSON (versioned schema), JUnit XML, Markdown."""

from __future__ import annotations

import json
import math
import re
from xml.etree import ElementTree as ET

from fwconv.validators.compare import ValidationReport


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value) -> str:
    """Text that is safe in an XML attribute or element: terminal colour codes (torch's exporter
    messages carry them) and characters XML 1.0 forbids are removed."""
    from fwconv.errors import strip_ansi

    return _NOT_XML.sub("", strip_ansi(str(value)))


def _fmt(x, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isinf(x) or abs(x) >= 1e300):
        return "inf"
    return format(x, spec)


def _row(o) -> list[str]:
    m = o.metrics
    agree = m.get("argmax_agreement")
    return [
        o.name, "PASS" if o.passed else "FAIL", _fmt(m.get("max_abs_err")), _fmt(m.get("max_rel_err")),
        _fmt(m.get("scaled_max_err")), _fmt(m.get("cosine"), ".6f"), _fmt(m.get("snr_db"), ".1f"),
        _fmt(agree, ".2f") if agree is not None else "-", _fmt(m.get("min_atol_to_pass")),
    ]


HEADERS = ["output", "result", "max_abs", "max_rel", "err/scale", "cosine", "SNR dB", "argmax", "min atol"]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def latency_rows(report: ValidationReport) -> list[list[str]]:
    rows = []
    for side, s in report.latency.items():
        rows.append([side, _fmt(s.p50_ms, ".3f"), _fmt(s.p90_ms, ".3f"), _fmt(s.p99_ms, ".3f"), _fmt(s.mean_ms, ".3f"),
                     _fmt(s.std_ms, ".3f"), _fmt(s.min_ms, ".3f"), str(s.runs), _fmt(s.load_seconds, ".3f"),
                     _fmt(s.first_inference_ms, ".2f"), _fmt(s.memory_mb, ".0f")])
    return rows


LAT_HEADERS = ["side", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "min ms", "runs", "load s", "first ms", "mem MB"]


def to_text(report: ValidationReport) -> str:
    if getattr(report, "kind", None) == "generative":
        return report.to_text()
    ref, cand = report.reference, report.candidate
    lines = [f"reference: {ref.get('model')} [{ref.get('runtime')}, {ref.get('device')}]",
             f"candidate: {cand.get('model')} [{cand.get('runtime')}, {cand.get('device')}]",
             f"inputs: {report.samples} sample(s)" + (f", seed {report.seed}" if report.seed is not None else ", from file"),
             ""]
    bindings = [b for b in report.input_bindings + report.output_bindings if b["how"] != "same name" or b["transpose"]]
    for b in bindings:
        lines.append(f"  pairing {b['reference']} -> {b['candidate']} ({b['how']}"
                     + (f", transpose {b['transpose']}" if b["transpose"] else "") + ")")
    lines.append(_table(HEADERS, [_row(o) for o in report.outputs]))
    for o in report.outputs:
        for w in o.warnings:
            lines.append(f"warning: output '{o.name}': {w}")
    for s in report.shapes:  # the dynamic dims at other sizes
        err = "-" if s["worst_scaled_err"] is None else f"{s['worst_scaled_err']:.3g}"
        shapes = ", ".join(f"{k}{v}" for k, v in s["inputs"].items())
        p50 = s.get("p50_ms")
        timing = f", p50 {p50['reference']:.3g} / {p50['candidate']:.3g} ms" if p50 else ""
        lines.append(f"  at {shapes}: {'PASS' if s['passed'] else 'FAIL'} (err/scale {err}{timing})")
    if report.latency:
        lines += ["", _table(LAT_HEADERS, latency_rows(report))]
        if report.latency_ratio is not None:
            budget = f" (budget {report.max_latency_ratio:.2f})" if report.max_latency_ratio else ""
            lines.append(f"latency ratio candidate/reference (p50): {report.latency_ratio:.2f}{budget}")
    for note in report.notes:
        lines.append(f"note: {note}")
    for failure in report.failures():
        lines.append(f"FAIL: {failure}")
    lines.append(f"verdict: {report.status.upper().replace('_', ' ')}")
    return "\n".join(lines)


def to_json(report: ValidationReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


def to_junit(report: ValidationReport, suite: str = "fwconv.validate") -> str:
    root = ET.Element("testsuites")
    cases = []
    for o in report.outputs:
        case = ET.Element("testcase", classname=suite, name=xml_text(f"parity[{o.name}]"))
        if not o.passed:
            fail = ET.SubElement(case, "failure", message=xml_text(o.failure or "parity failed"), type="parity")
            fail.text = xml_text(json.dumps(o.metrics, default=str))
        cases.append(case)
    if report.latency:
        case = ET.Element("testcase", classname=suite, name="latency")
        if not report.latency_passed:
            ET.SubElement(case, "failure", type="latency",
                          message=f"latency ratio {report.latency_ratio:.2f} > {report.max_latency_ratio:.2f}")
        cases.append(case)
    failures = sum(1 for c in cases if c.find("failure") is not None)
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0")
    ts.extend(cases)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def to_markdown(report: ValidationReport) -> str:
    icon = {"pass": "✅", "parity_failed": "❌", "latency_exceeded": "⚠️"}[report.status]
    ref, cand = report.reference, report.candidate
    md = [f"### {icon} fwconv validate: {report.status.replace('_', ' ')}", "",
          f"`{ref.get('model')}` ({ref.get('runtime')}) vs `{cand.get('model')}` ({cand.get('runtime')}), "
          f"{report.samples} sample(s)", "",
          "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    md += ["| " + " | ".join(_row(o)) + " |" for o in report.outputs]
    if report.latency:
        md += ["", "| " + " | ".join(LAT_HEADERS) + " |", "|" + "---|" * len(LAT_HEADERS)]
        md += ["| " + " | ".join(r) + " |" for r in latency_rows(report)]
        if report.latency_ratio is not None:
            md.append(f"\nLatency ratio (p50): **{report.latency_ratio:.2f}**")
    md += [f"- {f}" for f in report.failures()]
    return "\n".join(md) + "\n"


def to_html(report: ValidationReport) -> str:
    from fwconv.validators.html_report import validation_html

    return validation_html(report.to_dict())


def write_reports(report: ValidationReport, *, json_path=None, junit_path=None, markdown_path=None, html_path=None,
                  force: bool = False, protected: list[str] = ()) -> None:
    """Each report by fwconv's output rules (staged, --force to replace, never an input)."""
    from fwconv.staging import write_text

    renders = ((json_path, to_json), (junit_path, to_junit), (markdown_path, to_markdown), (html_path, to_html))
    if getattr(report, "kind", None) == "generative":  # a language model's token-by-token verdict renders itself
        renders = ((json_path, to_json), (junit_path, lambda r: r.to_junit()), (markdown_path, lambda r: r.to_markdown()),
                   (html_path, lambda r: r.to_html()))
    for path, render in renders:
        if path:
            write_text(path, render(report), force=force, protected=protected)
