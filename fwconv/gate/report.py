"""Gate results as a summary table, JSON, JUnit (a testcase per model x target) and Markdown."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from fwconv.validators.report import xml_text

# The gate's exit code: any parity failure wins (it is never downgraded), then errors,
# unsupported ops, latency; 0 only when every job passed.
EXIT_PRIORITY = (3, 1, 5, 4)


def exit_code(results: list[dict]) -> int:
    codes = {r["exit_code"] for r in results}
    return next((c for c in EXIT_PRIORITY if c in codes), 0)


def _worst_err(r: dict) -> str:
    outs = (r.get("validation") or {}).get("outputs") or []
    errs = [o["metrics"].get("scaled_max_err") for o in outs if o.get("metrics")]
    errs = [e for e in errs if e is not None]
    return f"{max(errs):.2e}" if errs else "-"


def rows(results: list[dict]) -> list[list[str]]:
    out = []
    for r in results:
        lat = r.get("latency") or {}
        ratio = (r.get("validation") or {}).get("latency_ratio")
        out.append([r["id"], r["status"].upper() + (" (cached)" if r.get("cached") else ""), _worst_err(r),
                    f"{lat['p50_ms']:.3f}" if lat else "-", f"{ratio:.2f}" if ratio else "-", f"{r.get('seconds', 0):.1f}"])
    return out


HEADERS = ["model:target", "status", "err/scale", "p50 ms", "lat. ratio", "time s"]


def to_text(results: list[dict]) -> str:
    table = rows(results)
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(HEADERS)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(HEADERS), line(["-" * w for w in widths])] + [line(r) for r in table]
    for r in results:
        for m in r.get("messages", []):
            out.append(f"{r['id']}: {m}")
    passed = sum(r["status"] == "pass" for r in results)
    out.append(f"gate: {passed} of {len(results)} passed, exit code {exit_code(results)}")
    return "\n".join(out)


def to_json(results: list[dict], meta: dict) -> str:
    return json.dumps({"schema": "fwconv.gate", "schema_version": 1, "exit_code": exit_code(results), **meta,
                       "results": results}, indent=2, default=str)


def to_junit(results: list[dict]) -> str:
    root = ET.Element("testsuites")
    failures = sum(r["status"] not in ("pass", "error") for r in results)
    errors = sum(r["status"] == "error" for r in results)
    suite = ET.SubElement(root, "testsuite", name="fwconv.gate", tests=str(len(results)), failures=str(failures),
                          errors=str(errors))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=xml_text(f"fwconv.gate.{r['model']}"), name=r["target"],
                             time=str(r.get("seconds", 0)))
        message = xml_text("; ".join(r.get("messages", [])) or r["status"])
        if r["status"] == "error":
            ET.SubElement(case, "error", message=message[:2000], type="error")
        elif r["status"] != "pass":
            ET.SubElement(case, "failure", message=message[:2000], type=r["status"])
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def to_markdown(results: list[dict]) -> str:
    code = exit_code(results)
    md = [f"### {'✅' if code == 0 else '❌'} fwconv gate: {sum(r['status'] == 'pass' for r in results)} of "
          f"{len(results)} passed", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    md += ["| " + " | ".join(r) + " |" for r in rows(results)]
    problems = [f"- `{r['id']}`: {m}" for r in results for m in r.get("messages", [])]
    return "\n".join(md + ([""] + problems if problems else [])) + "\n"


def to_html(results: list[dict], meta: dict) -> str:
    from fwconv.validators.html_report import gate_html

    return gate_html(results, meta)


def write(results: list[dict], meta: dict, *, json_path=None, junit_path=None, markdown_path=None, html_path=None,
          force: bool = False, protected: list[str] = ()) -> None:
    """Each report by fwconv's output rules (staged, --force to replace, never an input)."""
    from fwconv.staging import write_text

    for path, text in ((json_path, lambda: to_json(results, meta)), (junit_path, lambda: to_junit(results)),
                       (markdown_path, lambda: to_markdown(results)), (html_path, lambda: to_html(results, meta))):
        if path:
            write_text(path, text(), force=force, protected=protected)
