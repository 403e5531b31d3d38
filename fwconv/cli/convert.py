"""Conversion commands: `fwconv convert SRC --to FORMAT` and the named pairs (torch2tflite...).
Every option comes from fwconv.options (door CONVERT); this module only wires them to the API."""

from __future__ import annotations

import importlib.util

import click

from fwconv.cli.base import handle_errors, main
from fwconv.cli.doors import options_for
from fwconv.cli.reports import check_report_paths, emit, write_reports
from fwconv.options import CONVERT, CONVERT_TO


def run_conversion(source: str, target: str, kw, *, families: tuple[str, ...] | None = None) -> None:
    from fwconv.convert.pipeline import Source, convert, resolve_output
    from fwconv.convert.planner import family_of
    from fwconv.errors import InputError, ParityError
    from fwconv.manifest import manifest_path
    from fwconv.options import Options, split
    from fwconv.staging import check_writable, protected_paths
    from fwconv.validators.settings import settings_from

    options = Options(**split(kw)[0])  # cheap checks first: no model is read before these pass
    settings = settings_from(options, precision=options.artifact_precision)
    src = Source.sniff(source)  # the one sniff of this conversion
    if families and family_of(src.format) not in families:
        raise InputError(f"{source} is a {src.format} model; this command takes {' or '.join(families)} models",
                         hint=f"use: fwconv convert {source} --to {target}")
    inputs = protected_paths(source, options.inputs, options.calibration)
    # the artifact is not a report's to overwrite either; an artifact this command replaces is no input
    artifact = resolve_output(kw["output"], source, target)
    protected = inputs + [artifact, manifest_path(artifact)]
    check_report_paths(kw, protected)
    if options.debug_on_failure:
        check_writable(artifact + ".debug.json", artifact + ".debug.html", force=kw["force"], protected=protected)
    try:
        result = convert(src, target, kw["output"], options, settings)
    except ParityError as exc:
        if exc.report is not None:
            write_reports(exc.report, kw, protected)
        if exc.debug is not None:
            _write_failure_debug(exc, artifact, kw["force"], protected)
        raise
    click.echo(result.to_text())
    if result.validation is not None:
        click.echo("")
        emit(result.validation, kw, protected)


def _write_failure_debug(exc, artifact: str, force: bool, protected: list[str]) -> None:
    """--debug-on-failure: the layerwise report beside where the artifact would have gone
    (ARTIFACT.debug.json, and .debug.html where plotly is installed), its summary on stdout."""
    from fwconv.validators.debug.report import to_text, write_debug_reports

    click.echo(to_text(exc.debug))
    html = artifact + ".debug.html" if importlib.util.find_spec("plotly") else None
    written = write_debug_reports(exc.debug, json_path=artifact + ".debug.json", html_path=html, force=force,
                                  protected=protected)
    exc.hint = "; ".join(filter(None, [exc.hint, f"layerwise report: {', '.join(written)}"]))


def _conversion_command(name: str, target: str, families: tuple[str, ...] | None, help_text: str):
    @main.command(name, help=help_text)
    @click.argument("source")
    @options_for(CONVERT)
    @handle_errors
    def command(source, **kw):
        run_conversion(source, target, kw, families=families)

    return command


TORCH = ("torch",)
_conversion_command("torch2onnx", "onnx", TORCH, "PyTorch (.pt, .pt2, file.py:factory) -> ONNX, validated.")
_conversion_command("torch2tflite", "tflite", TORCH, "PyTorch -> builtin-ops .tflite (litert-torch first; via ONNX "
                    "and onnx2tf if that fails; --via), validated.")
_conversion_command("torch2pte", "pte", TORCH, "PyTorch (.pt2, file.py:factory, .pt via TS2EP) -> ExecuTorch .pte "
                    "(XNNPACK delegate or portable kernels), validated in the ExecuTorch runtime.")
_conversion_command("torch2savedmodel", "savedmodel", TORCH, "PyTorch -> TensorFlow SavedModel (via ONNX), validated.")
_conversion_command("onnx2tflite", "tflite", ("onnx",), "ONNX -> builtin-ops .tflite (onnx2tf), validated.")
_conversion_command("onnx2savedmodel", "savedmodel", ("onnx",), "ONNX -> TensorFlow SavedModel (onnx2tf), validated.")
_conversion_command("savedmodel2onnx", "onnx", ("savedmodel",), "TensorFlow SavedModel -> ONNX (tf2onnx), validated.")
_conversion_command("keras2onnx", "onnx", ("keras",), "Keras 3 .keras -> ONNX (tf2onnx), validated.")
_conversion_command("tflite2onnx", "onnx", ("tflite",), "TFLite -> ONNX (tf2onnx), validated.")
_conversion_command("savedmodel2torch", "torch", ("savedmodel",), "SavedModel -> TorchScript .pt (via ONNX), validated.")
_conversion_command("keras2torch", "torch", ("keras",), "Keras 3 .keras -> TorchScript .pt (via ONNX), validated.")
_conversion_command("tflite2torch", "torch", ("tflite",), "TFLite -> TorchScript .pt (via ONNX), validated.")
_conversion_command("onnx2torch", "torch", ("onnx",), "ONNX -> TorchScript .pt (onnx2torch), validated.")


@main.command("convert")
@click.argument("source")
@options_for(CONVERT_TO)
@options_for(CONVERT)
@handle_errors
def convert_command(source, to, **kw):
    """Convert SOURCE to FORMAT by the planned route, then validate it against SOURCE."""
    from fwconv.convert.planner import TARGETS
    from fwconv.errors import InputError

    if to not in TARGETS:
        raise InputError(f"unknown --to '{to}'", hint=f"choose one of: {', '.join(TARGETS)}")
    run_conversion(source, to, kw)
