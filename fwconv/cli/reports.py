"""Report files a command writes (--json/--junit/--markdown/--html): checked before any work by
fwconv's output rules (never an input, --force to replace), written once the verdict is in."""

from __future__ import annotations

import click

REPORTS = ("json", "junit", "markdown", "html")


def report_paths(kw) -> list[str]:
    return [kw[k] for k in REPORTS if kw.get(k)]


def check_html_support(html_path: str | None) -> None:
    """--html needs plotly (the `report` extra): say so before any model runs, not after."""
    if html_path:
        from fwconv.errors import require

        require("plotly", "report")


def check_report_paths(kw, protected: list[str]) -> None:
    """Before any work: report files follow the output rules (never an input, --force to replace)."""
    from fwconv.staging import check_writable

    check_writable(*report_paths(kw), force=kw["force"], protected=protected)
    check_html_support(kw.get("html"))


def write_reports(report, kw, protected: list[str], only: tuple[str, ...] = REPORTS) -> None:
    from fwconv.validators.report import write_reports as write

    write(report, **{f"{k}_path": kw.get(k) for k in only}, force=kw["force"], protected=protected)


def emit(report, kw, protected: list[str]) -> None:
    """The verdict on stdout, the report files, then the exit: parity (3) before latency (4)."""
    from fwconv.errors import LatencyBudgetError, ParityError
    from fwconv.validators.report import to_text

    click.echo(to_text(report))
    write_reports(report, kw, protected)
    if not report.parity_passed:
        line = report.failure_line() if hasattr(report, "failure_line") else "; ".join(report.failures())
        raise ParityError("parity failed: " + line)
    if not report.latency_passed:
        raise LatencyBudgetError(report.failures()[-1])
