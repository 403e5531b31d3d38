"""Gate results as a summary table, JSON, JUnit (a testcase per model x target) and Markdown."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from fwconv.gate.result import JobResult, Status, exit_code
from fwconv.validators.report import xml_text

__all__ = ["exit_code", "to_text", "to_json", "to_junit", "to_markdown", "write"]


def _worst_err(r: JobResult) -> str:
    outs = (r.validation or {}).get("outputs") or []
    errs = [o["metrics"].get("scaled_max_err") for o in outs if o.get("metrics")]
    errs = [e for e in errs if e is not None]
    return f"{max(errs):.2e}" if errs else "-"


def rows(results: list[JobResult]) -> list[list[str]]:
    out = []
    for r in results:
        lat = r.latency or {}
        ratio = (r.validation or {}).get("latency_ratio")
        out.append([r.id, r.status.value.upper() + (" (cached)" if r.cached else ""), _worst_err(r),
                    f"{lat['p50_ms']:.3f}" if lat else "-", f"{ratio:.2f}" if ratio else "-", f"{r.seconds:.1f}"])
    return out


HEADERS = ["model:target", "status", "err/scale", "p50 ms", "lat. ratio", "time s"]


def to_text(results: list[JobResult]) -> str:
    table = rows(results)
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(HEADERS)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(HEADERS), line(["-" * w for w in widths])] + [line(r) for r in table]
    for r in results:
        out += [f"{r.id}: {m}" for m in r.messages]
    passed = sum(r.status is Status.PASS for r in results)
    out.append(f"gate: {passed} of {len(results)} passed, exit code {exit_code(results)}")
    return "\n".join(out)


def to_json(results: list[JobResult], meta: dict) -> str:
    return json.dumps({"schema": "fwconv.gate", "schema_version": 1, "exit_code": exit_code(results), **meta,
                       "results": [r.to_dict() for r in results]}, indent=2, default=str)


def to_junit(results: list[JobResult]) -> str:
    root = ET.Element("testsuites")
    failures = sum(r.status.failed for r in results)
    errors = sum(r.status is Status.ERROR for r in results)
    suite = ET.SubElement(root, "testsuite", name="fwconv.gate", tests=str(len(results)), failures=str(failures),
                          errors=str(errors))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=xml_text(f"fwconv.gate.{r.model}"), name=r.target,
                             time=str(r.seconds))
        message = xml_text("; ".join(r.messages) or r.status.value)
        if r.status is Status.ERROR:
            ET.SubElement(case, "error", message=message[:2000], type="error")
        elif r.status.failed:
            ET.SubElement(case, "failure", message=message[:2000], type=r.status.value)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def to_markdown(results: list[JobResult]) -> str:
    code = exit_code(results)
    md = [f"### {'✅' if code == 0 else '❌'} fwconv gate: {sum(r.status is Status.PASS for r in results)} of "
          f"{len(results)} passed", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    md += ["| " + " | ".join(r) + " |" for r in rows(results)]
    problems = [f"- `{r.id}`: {m}" for r in results for m in r.messages]
    return "\n".join(md + ([""] + problems if problems else [])) + "\n"


def to_html(results: list[JobResult], meta: dict) -> str:
    """The gate: every job's status and worst error, p50 per job, and why each failed job failed."""
    from html import escape

    from fwconv.validators import html_plots as plots
    from fwconv.validators.html_report import badge, page, section, table

    bars = []
    for r in results:
        lat = (r.validation or {}).get("latency") or {}
        bars.append((r.id, (lat.get("reference") or {}).get("p50_ms"),
                     (lat.get("candidate") or {}).get("p50_ms") or (r.latency or {}).get("p50_ms")))
    failed = [r.status is not Status.PASS for r in results]
    failures = [f"<h3>{escape(r.id)} {badge(r.status.value)}</h3><ul>" + "".join(f"<li>{escape(str(m))}</li>"
                                                                              for m in r.messages) + "</ul>"
                for r in results if r.status is not Status.PASS]
    code = exit_code(results) if results else 0
    body = [f"<h1>fwconv gate {badge('pass' if code == 0 else 'failed')}</h1>",
            f"<div>{failed.count(False)} of {len(results)} job(s) passed, exit code {code}</div>",
            f"<div class=\"muted\">config <code>{escape(str(meta.get('config', '?')))}</code>, output dir "
            f"<code>{escape(str(meta.get('output_dir', '?')))}</code></div>",
            section("Jobs", table(HEADERS, rows(results), failed=failed) if results else None, empty="no jobs ran"),
            section("Latency per job", plots.gate_latency(bars), empty="no latency was measured"),
            section("Failed jobs", *failures, empty="every job passed")]
    return page("fwconv gate", body)


def write(results: list[JobResult], meta: dict, *, json_path=None, junit_path=None, markdown_path=None, html_path=None,
          force: bool = False, protected: list[str] = ()) -> None:
    """Each report by fwconv's output rules (staged, --force to replace, never an input)."""
    from fwconv.staging import write_text

    for path, text in ((json_path, lambda: to_json(results, meta)), (junit_path, lambda: to_junit(results)),
                       (markdown_path, lambda: to_markdown(results)), (html_path, lambda: to_html(results, meta))):
        if path:
            write_text(path, text(), force=force, protected=protected)
