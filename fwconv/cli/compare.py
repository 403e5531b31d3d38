"""`fwconv validate` and `fwconv debug`: two models on identical inputs; every option from
fwconv.options (doors VALIDATE and DEBUG)."""

from __future__ import annotations

import click

from fwconv.cli.base import handle_errors, main
from fwconv.cli.doors import options_for
from fwconv.cli.reports import check_report_paths, emit, write_reports
from fwconv.options import DEBUG, VALIDATE


def _validation_inputs(candidate: str, kw):
    """Options, settings (precision from the candidate's manifest unless given), --input-shape
    specs and --inputs arrays: the same for validate and debug."""
    from fwconv.errors import InputError
    from fwconv.manifest import read_manifest
    from fwconv.options import Options, split
    from fwconv.specs import load_npz
    from fwconv.validators.settings import settings_from

    options = Options(**split(kw)[0])
    manifest = read_manifest(candidate)
    precision = (manifest.extra or {}).get("precision") if manifest is not None else None
    settings = settings_from(options, precision=precision, device=kw["device"])
    user = load_npz(options.inputs) if options.inputs else None
    if user is not None and options.input_specs:
        raise InputError("give either --inputs or --input-shape, not both")
    return options, settings, options.input_specs or None, user


@main.command("validate")
@click.argument("reference")
@click.argument("candidate")
@options_for(VALIDATE)
@handle_errors
def validate_command(reference, candidate, **kw):
    """Compare CANDIDATE against REFERENCE on identical inputs: parity per output, and latency."""
    from fwconv.staging import protected_paths
    from fwconv.validators import validate

    protected = protected_paths(reference, candidate, kw["inputs"])
    check_report_paths(kw, protected)
    from fwconv.models.hf import is_hf_dir

    if is_hf_dir(reference):  # a language model: the token-by-token verdict
        emit(_validate_generative(reference, candidate, kw), kw, protected)
        return
    options, settings, specs, user = _validation_inputs(candidate, kw)
    report = validate(reference, candidate, settings=settings, ref_specs=specs, user_inputs=user,
                      isolate=kw["isolate"], timeout=kw["timeout"], trust_pickle=options.trust_pickle)
    emit(report, kw, protected)


def _validate_generative(reference: str, candidate: str, kw):
    """REFERENCE is a Hugging Face model directory: CANDIDATE a generator (.tflite, .litertlm, .pte or ONNX)."""
    from fwconv.manifest import read_manifest
    from fwconv.models.formats import detect_format
    from fwconv.options import Options, split
    from fwconv.validators.generative import GenerativeSettings, validate_generative

    options = Options(**split(kw)[0])
    manifest = read_manifest(candidate)
    contract = (manifest.extra or {}).get("generative") if manifest is not None else None
    recorded = (manifest.validation or {}).get("precision") if manifest is not None else None
    fmt = detect_format(candidate)  # a missing or unknown candidate: one line, exit 2
    if fmt not in ("tflite", "litertlm", "pte", "onnx"):
        from fwconv.errors import InputError

        raise InputError(f"{candidate} is a {fmt} model: a language model directory is checked against a generator "
                         "(.tflite/.litertlm with prefill/decode, .pte with a KV cache, ONNX with past key/values)")
    settings = GenerativeSettings.from_options(options, precision=options.precision or recorded)
    return validate_generative(reference, candidate, settings, contract=contract)


@main.command("debug")
@click.argument("reference")
@click.argument("candidate")
@options_for(DEBUG)
@handle_errors
def debug_command(reference, candidate, **kw):
    """Find where CANDIDATE departs from REFERENCE: every intermediate tensor paired across the
    two frameworks and compared in graph order; the first divergence named on both sides.
    --json and --html write the layerwise report; --junit/--markdown the outputs' verdict."""
    from fwconv.errors import ParityError
    from fwconv.staging import check_writable, protected_paths
    from fwconv.validators.debug import DebugSettings, debug
    from fwconv.validators.debug.report import to_text, write_debug_reports

    protected = protected_paths(reference, candidate, kw["inputs"])
    check_report_paths(kw, protected)
    bundle = _bundle_path(reference, candidate, kw) if kw["reduce"] else None
    check_writable(*filter(None, [kw["model_explorer"], bundle]), force=kw["force"], protected=protected)
    options, settings, specs, user = _validation_inputs(candidate, kw)
    report = debug(reference, candidate, settings=DebugSettings(settings, isolate=kw["isolate_ops"]), ref_specs=specs,
                   user_inputs=user, trust_pickle=options.trust_pickle)
    click.echo(to_text(report, top=kw["top"]))
    write_debug_reports(report, json_path=kw["json"], html_path=kw["html"], explorer_path=kw["model_explorer"],
                        force=kw["force"], protected=protected)
    write_reports(report.validation, kw, protected, only=("junit", "markdown"))
    if bundle and report.status == "clean":
        click.echo("reduce: nothing to reduce (the models agree)")
    elif bundle:
        _reduce(reference, candidate, bundle, kw, protected)
    if report.status != "clean":
        raise ParityError("the models diverge: " + divergence_line(report))


def _bundle_path(reference: str, candidate: str, kw) -> str:
    """Where --reduce writes (checked before anything runs): -o DIR, else CANDIDATE.repro beside it."""
    from fwconv.errors import InputError
    from fwconv.convert.planner import family_of
    from fwconv.models.formats import detect_format

    fmt = detect_format(reference)
    if fmt != "onnx" and family_of(fmt) != "torch":
        raise InputError(f"--reduce cuts an ONNX graph (or a PyTorch model's ONNX export): {reference} is a {fmt} "
                         "model", hint="debug the ONNX the candidate was converted from")
    return kw["reduce_output"] or candidate.rstrip("/") + ".repro"


def _as_onnx(reference: str, candidate: str, kw, workdir: str) -> str:
    """The reference as ONNX: itself, or a PyTorch model exported by fwconv's own ONNX edge with
    the exporter and opset the candidate's manifest records (as its route exported it)."""
    import os

    from fwconv.convert.pipeline import convert
    from fwconv.manifest import read_manifest
    from fwconv.models.formats import detect_format
    from fwconv.options import Options, split

    if detect_format(reference) == "onnx":
        return reference
    manifest = read_manifest(candidate)
    recorded = {k: v for k, v in ((manifest.extra or {}) if manifest else {}).items() if k in ("exporter", "opset")}
    options = Options(**{**split(kw)[0], **recorded, "validate": False, "force": True, "reduce": False})
    return convert(reference, "onnx", os.path.join(workdir, "reference.onnx"), options).artifact


def _reduce(reference: str, candidate: str, bundle: str, kw, protected) -> None:
    from fwconv.convert.reduce import converter_settings, reduce_to_bundle
    from fwconv.staging import scratch_dir

    converter, settings = converter_settings(candidate)
    with scratch_dir() as workdir:
        found = reduce_to_bundle(_as_onnx(reference, candidate, kw, workdir), converter, settings, bundle,
                                 budget=kw["reduce_budget"], force=kw["force"], protected=protected)
    if found.status == "not_reproduced":
        click.echo(f"reduce: {converter} converts {reference} to a matching model now ({found.line}): the "
                   "candidate differs from what the converter makes; the divergence above names where")
        return
    ops = ", ".join(op for op, _ in found.nodes)
    spent = "; the time budget ran out first" if found.budget_spent else ""
    click.echo(f"reduce: {found.start_nodes} nodes -> {len(found.nodes)} ({ops}): {found.line}; {found.conversions} "
               f"conversions in {found.seconds:g} s{spent}")
    click.echo(f"reduce: repro bundle written to {bundle} (python {bundle}/repro.py reproduces it with {converter} "
               "alone)")


def divergence_line(report) -> str:
    d = report.first_divergence
    if d is None:
        return "; ".join(report.validation.failures()) or "outputs differ"
    p = report.pairs[d.pair]
    where = f" [{p.reference['module']}]" if p.reference.get("module") else ""
    return (f"first at reference {p.reference['op']} ({p.reference['op_type']}){where} = candidate "
            f"{p.candidate['op']} ({p.candidate['op_type']})")
