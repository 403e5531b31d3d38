"""`fwconv gate CONFIG` and `fwconv golden save|update CONFIG`: the CI gate over the same API.
The gate run's flags come from fwconv.options (door GATE_CLI); a config's keys from door GATE."""

from __future__ import annotations

import sys

import click

from fwconv.cli.base import handle_errors, main
from fwconv.cli.doors import options_for
from fwconv.cli.reports import check_html_support
from fwconv.options import GATE_CLI, GOLDEN


@main.command("gate")
@click.argument("config", type=click.Path())
@options_for(GATE_CLI)
@handle_errors
def gate_command(config, **kw):
    """Convert and validate every model x target in CONFIG (TOML, or pyproject.toml [tool.fwconv])."""
    from fwconv.gate import report
    from fwconv.gate.baseline import save_baseline as write_baseline
    from fwconv.gate.config import input_paths
    from fwconv.gate.run import run_gate
    from fwconv.progress import echo
    from fwconv.staging import check_writable

    protected = input_paths(config)
    reports = {k: kw[k] for k in ("json", "junit", "markdown", "html")}
    check_writable(*filter(None, (*reports.values(), kw["save_baseline"])), force=kw["force"], protected=protected)
    check_html_support(kw["html"])

    def progress(result, done, total):
        cached = " (cached)" if result.cached else f" ({result.seconds:.0f}s)"
        echo(f"[{'#' * done:<{total}}] {done}/{total} {result.id}: {result.status.value}{cached}")

    results, meta = run_gate(config, workers=kw["jobs"], executor=kw["executor"], address=kw["ray_address"],
                             only=list(kw["model"]) or None, check_only=kw["check_only"], use_cache=kw["cache"],
                             baseline=kw["baseline"], regression_threshold=kw["regression_threshold"],
                             debug_on_failure=kw["debug_on_failure"], on_result=progress)
    if kw["save_baseline"]:
        saved = write_baseline(kw["save_baseline"], results, force=kw["force"], protected=protected)
        click.echo(f"saved latency baseline for {saved} job(s) to {kw['save_baseline']}")
    click.echo(report.to_text(results))
    report.write(results, meta, **{f"{k}_path": v for k, v in reports.items()}, force=kw["force"], protected=protected)
    code = report.exit_code(results)
    if code:
        sys.exit(code)


@main.group("golden")
def golden_group():
    """Golden inputs and reference outputs, to catch drift across framework upgrades."""


def _golden(config: str, only: tuple[str, ...], update: bool) -> None:
    from fwconv.errors import InputError
    from fwconv.gate.config import jobs_from_config
    from fwconv.gate.golden import save_golden

    jobs, _ = jobs_from_config(config, only=list(only) or None)
    seen = set()
    for job in jobs:
        if job.model in seen:
            continue
        seen.add(job.model)
        if not job.golden:
            raise InputError(f"model '{job.model}' has no golden directory",
                             hint="set [gate] golden_dir or the model's golden = '...'")
        save_golden(job.golden, job.source, job.settings, update=update)
        click.echo(f"{'updated' if update else 'saved'} golden for {job.model}: {job.golden}")


def _golden_command(name: str, update: bool, help_text: str) -> None:
    @golden_group.command(name, help=help_text)
    @click.argument("config", type=click.Path())
    @options_for(GOLDEN)
    @handle_errors
    def command(config, model):
        _golden(config, model, update=update)


_golden_command("save", False, "Write goldens for CONFIG's models (refuses to overwrite existing ones).")
_golden_command("update", True, "Refresh goldens deliberately (after a reviewed change in outputs).")
