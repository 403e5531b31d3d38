"""The `fwconv` command line. Thin over fwconv.convert / fwconv.validators; imports no framework
at start-up, so --help and usage errors are instant. Exit codes: fwconv.errors.EXIT_CODES.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import traceback

import click

from fwconv.errors import EXIT_CODES, FwconvError

DEBUG = {"on": False}


def _fail(message: str, code: int) -> None:
    click.echo(f"fwconv: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn):
    """Map typed errors to one line and their exit code; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from fwconv import signals

        try:
            result = fn(*args, **kwargs)
        except FwconvError as exc:
            if DEBUG["on"]:
                traceback.print_exc()
            report = getattr(exc, "report", None)
            if report is not None:
                from fwconv.validators.report import to_text

                click.echo(to_text(report))
            _fail(exc.one_line(), exc.exit_code)
        except signals.Interrupted as exc:
            _fail(exc.one_line(), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # a bug or an unexpected library failure: still one line
            if DEBUG["on"]:
                traceback.print_exc()
            _fail(f"unexpected {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} "
                  "(run with --debug for the traceback)", 1)
        interrupted = signals.received()  # a library swallowed the signal: the run still failed
        if interrupted is not None:
            _fail(interrupted.one_line(), interrupted.exit_code)
        return result

    return wrapper


MAIN_HELP = ("Convert models between PyTorch, ONNX, TensorFlow and TFLite, and prove the result.\n\n\b\nExit codes:\n"
             + "\n".join(f"  {code:>3} {meaning}" for code, meaning in EXIT_CODES.items()))


class OneLineErrors(click.Group):
    """Click's usage errors (unknown option, bad value) as one `fwconv: error:` line, exit 2,
    like every other error: no usage banner, no 'Try --help' line."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `fwconv`: the help, as --help gives it
            click.echo(exc.format_message())
            sys.exit(0)
        except click.ClickException as exc:
            _fail(exc.format_message().replace("\n", " "), exc.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        if isinstance(code, int) and code:
            sys.exit(code)
        return code


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             help=MAIN_HELP)
@click.version_option(package_name="fwconv")
@click.option("--debug", is_flag=True, help="Show tracebacks and the converters' own logs.")
@click.option("--max-size", metavar="SIZE", help="Largest archive member or tensor an input file may declare "
              "(default 16G; 'none' lifts the cap). Larger ones are refused (exit 2).")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="Show long steps on stderr: live on a terminal, plain lines otherwise (default: on a "
              "terminal or with CI=true; also FWCONV_PROGRESS=0/1).")
def main(debug: bool, max_size: str | None, show_progress: bool | None) -> None:
    """Global options (see MAIN_HELP for the help text)."""
    import os

    from fwconv import progress, signals

    signals.install()
    progress.configure(show_progress, live=not debug)
    DEBUG["on"] = debug
    if not debug:  # one line per error: TensorFlow's C++ log and library warnings only with --debug
        import warnings

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore")
    if max_size is not None:
        from fwconv.limits import ENV, parse_size

        try:
            parse_size(max_size)
        except FwconvError as exc:
            _fail(exc.one_line(), exc.exit_code)
        os.environ[ENV] = max_size  # isolated runners and gate workers inherit it
    if debug:
        from fwconv import quiet

        quiet.DEBUG["on"] = True


# -- shared option groups ------------------------------------------------------------------

def input_options(fn):
    for opt in reversed([
        click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False),
                     help="Sample inputs (.npz). Arrays feed inputs in file order; matching names win."),
        click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME:]D0,D1,..",
                     help="Input shape, repeatable (positional, or name:shape)."),
        click.option("--input-dtype", "input_dtypes", multiple=True, metavar="[NAME:]DTYPE",
                     help="Input dtype (default float32), e.g. input_ids:int64."),
        click.option("--input-range", "input_ranges", multiple=True, metavar="[NAME:]LOW,HIGH",
                     help="Value range for synthetic inputs (integers: HIGH exclusive)."),
        click.option("--dynamic", "dynamic", multiple=True, metavar="batch[:MIN..MAX]|NAME:DIM[=LABEL][:MIN..MAX]",
                     help="A dim that stays variable (repeatable; a shared LABEL ties dims): conversions keep it "
                          "dynamic where the route can, and parity is checked at several sizes. A MAX whose "
                          "inputs would pass the --max-size cap is refused before anything loads (exit 2)."),
    ]):
        fn = opt(fn)
    return fn


def validation_options(fn):
    for opt in reversed([
        click.option("--samples", default=1, show_default=True, help="Number of seeded input sets to compare."),
        click.option("--seed", default=0, show_default=True, help="Seed for synthetic inputs."),
        click.option("--atol", type=float, help="Absolute tolerance (default: precision-based, scaled to each output)."),
        click.option("--rtol", type=float, help="Relative tolerance (default: precision-based)."),
        click.option("--tolerance", "per_output", multiple=True, metavar="OUTPUT=ATOL[,RTOL]",
                     help="Per-output tolerance override, repeatable."),
        click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]),
                     help="Candidate precision for default tolerances (default: from the artifact)."),
        click.option("--map", "maps", multiple=True, metavar="REF=CAND[:nhwc]",
                     help="Pair a reference tensor with a candidate tensor (and its layout)."),
        click.option("--threads", type=int, help="Threads for each runtime."),
        click.option("--warmup", default=3, show_default=True, help="Warm-up runs before timing."),
        click.option("--warmup-seconds", default=0.0, show_default=True, help="Keep warming up for at least this long."),
        click.option("--runs", default=20, show_default=True, help="Timed runs (at least)."),
        click.option("--min-seconds", default=0.0, show_default=True, help="Keep timing for at least this long."),
        click.option("--no-latency", is_flag=True, help="Skip latency measurement."),
        click.option("--max-latency-ratio", type=float, help="Fail (exit 4) if candidate/reference p50 is above this."),
        click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON."),
        click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="Write the report as JUnit XML."),
        click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), help="Write a Markdown summary."),
        click.option("--html", "html_path", type=click.Path(dir_okay=False),
                     help="Write a self-contained HTML report (plots; one offline file; needs fwconv[report])."),
        click.option("--force", is_flag=True, help="Replace existing outputs (a file, or a directory fwconv wrote); "
                     "never an input."),
    ]):
        fn = opt(fn)
    return fn


def conversion_options(fn):
    from fwconv.convert.repair import DEFAULT_BUDGET_S  # plain data: no framework comes with it

    for opt in reversed([
        click.option("-o", "--output", type=click.Path(), help="Output file (.onnx/.tflite/.pte/.pt) or directory (SavedModel)."),
        click.option("--opset", default=18, show_default=True, help="ONNX opset for the export."),
        click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto",
                     show_default=True, help="PyTorch->ONNX exporter (auto tries dynamo, then TorchScript)."),
        click.option("--fp16", is_flag=True, help="Half-precision weights (.tflite); same as --quantize fp16."),
        click.option("--quantize", type=click.Choice(["fp16", "dynamic", "int8"]),
                     help="TFLite quantization: fp16 weights, dynamic (int8 weights), int8 (full integer; needs --calibration)."),
        click.option("--calibration", type=click.Path(), help="Calibration samples for --quantize int8 (.npz with a leading "
                     "sample axis, or a folder of .npz/.npy samples)."),
        click.option("--int8-io", is_flag=True, help="With --quantize int8: int8 input/output tensors too."),
        click.option("--min-cosine", type=float, help="Cosine floor the artifact must reach (default: the precision's); "
                     "with --quantize int8 the target of selective quantization."),
        click.option("--max-float-ops", type=int, help="With --quantize int8: at most this many ops kept in float when "
                     "full int8 fails (default 16; 0: full int8 only)."),
        click.option("--via", type=click.Choice(["auto", "best", "onnx", "litert"]), default="auto", show_default=True,
                     help="PyTorch->TFLite route: ONNX+onnx2tf, litert-torch, auto (litert-torch first, the ONNX route "
                          "only if it fails) or best (both, keep the fastest that passes)."),
        click.option("--backend", type=click.Choice(["xnnpack", "portable", "auto"]),
                     help="ExecuTorch (.pte) backend: the XNNPACK delegate (default), portable kernels only, or auto "
                          "(convert both, keep the fastest that passes)."),
        click.option("--layout", type=click.Choice(["source", "nhwc", "nchw"]), default="source", show_default=True,
                     help="I/O layout of the artifact: the source's (NCHW stays NCHW, NHWC stays NHWC), "
                          "channel-last (PyTorch/ONNX -> TFLite/SavedModel) or channel-first (TF -> ONNX/PyTorch)."),
        click.option("--outputs", "outputs", type=click.Choice(["auto", "tuple", "dict"]), default="auto", show_default=True,
                     help="What a converted PyTorch module returns: auto (a tensor, or a tuple in the source's order; "
                          "a dict where the source returns one), tuple, or dict by output name."),
        click.option("--allow-flex", is_flag=True, help="Allow Select-TF (Flex) ops instead of failing."),
        click.option("--trust-pickle", is_flag=True,
                     help="Allow the model file to run code: pickled Python objects, Keras Lambda layers."),
        click.option("--no-validate", is_flag=True, help="Skip validating the artifact against the source."),
        click.option("--keep-failed", is_flag=True, help="Write the artifact even if it fails parity (exit 3 still)."),
        click.option("--no-repair", is_flag=True,
                     help="When the artifact fails parity, do not try the repairs (other converter settings, "
                          "the other exporter, an opset upgrade; see README)."),
        click.option("--repair-budget", type=float, default=DEFAULT_BUDGET_S, show_default=True,
                     help="Seconds all repair attempts may take together."),
        click.option("--debug-on-failure", is_flag=True,
                     help="On a parity failure, run `fwconv debug` on the source and the failed artifact and write "
                          "OUTPUT.debug.json/.html (first diverging op, named on both sides)."),
    ]):
        fn = opt(fn)
    return input_options(validation_options(fn))


# -- settings builders ---------------------------------------------------------------------

def validate_settings(kw, *, device="cpu", precision=None):
    """The validation settings the options in `kw` describe (checked in fwconv.validators.settings)."""
    from fwconv.dynamic import parse_dynamic
    from fwconv.validators.latency import LatencySettings
    from fwconv.validators.settings import build_settings

    latency = None if kw["no_latency"] else LatencySettings(kw["warmup"], kw["warmup_seconds"], kw["runs"],
                                                            kw["min_seconds"])
    return build_settings(precision=kw["precision"] or precision or "fp32", atol=kw["atol"], rtol=kw["rtol"],
                          per_output=kw["per_output"], samples=kw["samples"], seed=kw["seed"],
                          input_ranges=kw["input_ranges"], maps=kw["maps"], threads=kw["threads"], device=device,
                          latency=latency, max_latency_ratio=kw["max_latency_ratio"],
                          dynamic=parse_dynamic(kw.get("dynamic", ())))


def _report_paths(kw) -> list[str]:
    return [p for p in (kw["json_path"], kw["junit_path"], kw["markdown_path"], kw["html_path"]) if p]


def check_html_support(html_path: str | None) -> None:
    """--html needs plotly (the `report` extra): say so before any model runs, not after."""
    if html_path:
        from fwconv.errors import require

        require("plotly", "report")


def _check_report_paths(kw, protected: list[str]) -> None:
    """Before any work: report files follow the output rules (never an input, --force to replace)."""
    from fwconv.staging import check_writable

    check_writable(*_report_paths(kw), force=kw["force"], protected=protected)
    check_html_support(kw["html_path"])


def _write_reports(report, kw, protected: list[str]) -> None:
    from fwconv.validators.report import write_reports

    write_reports(report, json_path=kw["json_path"], junit_path=kw["junit_path"], markdown_path=kw["markdown_path"],
                  html_path=kw["html_path"], force=kw["force"], protected=protected)


def _emit(report, kw, protected: list[str]) -> None:
    from fwconv.errors import LatencyBudgetError, ParityError
    from fwconv.validators.report import to_text

    click.echo(to_text(report))
    _write_reports(report, kw, protected)
    if not report.parity_passed:
        raise ParityError("parity failed: " + "; ".join(report.failures()))
    if not report.latency_passed:
        raise LatencyBudgetError(report.failures()[-1])


# -- conversion commands -------------------------------------------------------------------

def run_conversion(source: str, target: str, kw, *, families: tuple[str, ...] | None = None) -> None:
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert, resolve_output
    from fwconv.convert.planner import family_of
    from fwconv.errors import InputError, ParityError
    from fwconv.manifest import manifest_path
    from fwconv.models.formats import detect_format
    from fwconv.staging import protected_paths

    options = ConvertOptions.from_strings(  # cheap checks first: no model is read before these pass
        kw["input_shapes"], kw["input_dtypes"], opset=kw["opset"], fp16=kw["fp16"], quantize=kw["quantize"],
        layout=kw["layout"], allow_flex=kw["allow_flex"], exporter=kw["exporter"], trust_pickle=kw["trust_pickle"],
        force=kw["force"], validate=not kw["no_validate"], keep_failed=kw["keep_failed"],
        inputs_file=kw["inputs_file"], input_ranges=kw["input_ranges"], int8_io=kw["int8_io"],
        calibration=kw["calibration"], via=kw["via"], outputs=kw["outputs"], debug_on_failure=kw["debug_on_failure"],
        repair=not kw["no_repair"], repair_budget=kw["repair_budget"], min_cosine=kw["min_cosine"],
        max_float_ops=kw["max_float_ops"], backend=kw["backend"],
        dynamic=kw["dynamic"])
    settings = validate_settings(kw, precision=options.precision)
    fmt = detect_format(source)
    if families and family_of(fmt) not in families:
        raise InputError(f"{source} is a {fmt} model; this command takes {' or '.join(families)} models",
                         hint=f"use: fwconv convert {source} --to {target}")
    inputs = protected_paths(source, kw["inputs_file"], kw["calibration"])
    # the artifact is not a report's to overwrite either; an artifact this command replaces is no input
    artifact = resolve_output(kw["output"], source, target)
    report_protected = inputs + [artifact, manifest_path(artifact)]
    _check_report_paths(kw, report_protected)
    if options.debug_on_failure:
        from fwconv.staging import check_writable

        check_writable(artifact + ".debug.json", artifact + ".debug.html", force=kw["force"], protected=report_protected)
    try:
        result = convert(source, target, kw["output"], options, settings)
    except ParityError as exc:
        if exc.report is not None:
            _write_reports(exc.report, kw, report_protected)
        if exc.debug is not None:
            _write_failure_debug(exc, artifact, kw["force"], report_protected)
        raise
    click.echo(result.to_text())
    if result.validation is not None:
        click.echo("")
        _emit(result.validation, kw, report_protected)


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
    @conversion_options
    @handle_errors
    def command(source, **kw):
        run_conversion(source, target, kw, families=families)

    return command


TORCH = ("torch",)
_conversion_command("torch2onnx", "onnx", TORCH, "PyTorch (.pt, .pt2, file.py:factory) -> ONNX, validated.")
_conversion_command("torch2tflite", "tflite", TORCH, "PyTorch -> builtin-ops .tflite (litert-torch first; via ONNX and onnx2tf if that fails; --via), validated.")
_conversion_command("torch2pte", "pte", TORCH, "PyTorch (.pt2, file.py:factory) -> ExecuTorch .pte (XNNPACK "
                    "delegate or portable kernels), validated in the ExecuTorch runtime.")
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
@click.option("--to", "target", required=True, metavar="FORMAT", help="onnx | tflite | savedmodel | torch | pte")
@conversion_options
@handle_errors
def convert_command(source, target, **kw):
    """Convert SOURCE to FORMAT by the planned route, then validate it against SOURCE."""
    from fwconv.convert.planner import TARGETS
    from fwconv.errors import InputError

    if target not in TARGETS:
        raise InputError(f"unknown --to '{target}'", hint=f"choose one of: {', '.join(TARGETS)}")
    run_conversion(source, target, kw)


def _validation_inputs(candidate: str, kw, device: str):
    """Settings (precision from the candidate's manifest unless given), --input-shape specs and
    --inputs arrays: the same for validate and debug."""
    from fwconv.errors import InputError
    from fwconv.manifest import read_manifest
    from fwconv.specs import load_npz, specs_from_options

    manifest = read_manifest(candidate)
    precision = (manifest.extra or {}).get("precision") if manifest is not None else None
    settings = validate_settings(kw, device=device, precision=precision)
    user = load_npz(kw["inputs_file"]) if kw["inputs_file"] else None
    specs = specs_from_options(kw["input_shapes"], kw["input_dtypes"]) or None
    if user is not None and specs:
        raise InputError("give either --inputs or --input-shape, not both")
    return settings, specs, user


@main.command("validate")
@click.argument("reference")
@click.argument("candidate")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--isolate/--in-process", default=True, show_default=True,
              help="Run each model in its own process (crash/hang safe, per-runner peak memory).")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds each isolated runner may take per step.")
@click.option("--trust-pickle", is_flag=True, help="Allow loading pickled Python objects (runs code from the file).")
@input_options
@validation_options
@handle_errors
def validate_command(reference, candidate, device, isolate, timeout, trust_pickle, **kw):
    """Compare CANDIDATE against REFERENCE on identical inputs: parity per output, and latency."""
    from fwconv.staging import protected_paths
    from fwconv.validators import validate

    protected = protected_paths(reference, candidate, kw["inputs_file"])
    _check_report_paths(kw, protected)
    settings, specs, user = _validation_inputs(candidate, kw, device)
    report = validate(reference, candidate, settings=settings, ref_specs=specs, user_inputs=user,
                      isolate=isolate, timeout=timeout, trust_pickle=trust_pickle)
    _emit(report, kw, protected)


@main.command("debug")
@click.argument("reference")
@click.argument("candidate")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--trust-pickle", is_flag=True, help="Allow loading pickled Python objects (runs code from the file).")
@click.option("--isolate-ops", is_flag=True,
              help="Also run each candidate op alone on the reference's inputs (ONNX candidates), so an op "
                   "wrong by itself stands out from the error it inherits.")
@click.option("--model-explorer", "explorer_path", type=click.Path(dir_okay=False),
              help="Write per-op errors as Model Explorer node data (colour the candidate's graph).")
@click.option("--top", default=10, show_default=True, help="Rows of the worst tensor pairs to print.")
@input_options
@validation_options
@handle_errors
def debug_command(reference, candidate, device, trust_pickle, isolate_ops, explorer_path, top, **kw):
    """Find where CANDIDATE departs from REFERENCE: every intermediate tensor paired across the
    two frameworks and compared in graph order; the first divergence named on both sides.
    --json and --html write the layerwise report; --junit/--markdown the outputs' verdict."""
    from fwconv.errors import ParityError
    from fwconv.staging import check_writable, protected_paths
    from fwconv.validators.debug import DebugSettings, debug
    from fwconv.validators.debug.report import to_text, write_debug_reports
    from fwconv.validators.report import write_reports

    protected = protected_paths(reference, candidate, kw["inputs_file"])
    _check_report_paths(kw, protected)
    check_writable(*filter(None, [explorer_path]), force=kw["force"], protected=protected)
    settings, specs, user = _validation_inputs(candidate, kw, device)
    report = debug(reference, candidate, settings=DebugSettings(settings, isolate=isolate_ops), ref_specs=specs,
                   user_inputs=user, trust_pickle=trust_pickle)
    click.echo(to_text(report, top=top))
    write_debug_reports(report, json_path=kw["json_path"], html_path=kw["html_path"], explorer_path=explorer_path,
                        force=kw["force"], protected=protected)
    write_reports(report.validation, junit_path=kw["junit_path"], markdown_path=kw["markdown_path"],
                  force=kw["force"], protected=protected)
    if report.status != "clean":
        raise ParityError("the models diverge: " + _divergence_line(report))


def _divergence_line(report) -> str:
    d = report.first_divergence
    if d is None:
        return "; ".join(report.validation.failures()) or "outputs differ"
    p = report.pairs[d.pair]
    where = f" [{p.reference['module']}]" if p.reference.get("module") else ""
    return (f"first at reference {p.reference['op']} ({p.reference['op_type']}){where} = candidate "
            f"{p.candidate['op']} ({p.candidate['op_type']})")


@main.command("gate")
@click.argument("config", type=click.Path())
@click.option("--jobs", "workers", default=1, show_default=True, help="Model x target jobs to run in parallel processes.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run jobs as local processes or as Ray tasks.")
@click.option("--ray-address", help="Ray cluster address for --executor ray (default: a local instance).")
@click.option("--model", "only", multiple=True, help="Only these models (repeatable).")
@click.option("--check-only", is_flag=True, help="Do not convert: validate the artifacts already in the output dir.")
@click.option("--debug-on-failure", is_flag=True, help="Each job that fails parity gets a layerwise report beside its "
              "artifact (ARTIFACT.debug.json/.html); also `debug_on_failure = true` in the config.")
@click.option("--no-cache", is_flag=True, help="Run every job, even if nothing it depends on changed.")
@click.option("--baseline", type=click.Path(), help="Latency baseline to check for regressions.")
@click.option("--save-baseline", type=click.Path(), help="Write this run's latencies as the new baseline.")
@click.option("--regression-threshold", default=0.25, show_default=True,
              help="Least relative p50 increase that counts as a regression (raised for noisy timings).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False))
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False))
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False))
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write a self-contained HTML report (one offline file; needs fwconv[report]).")
@click.option("--force", is_flag=True, help="Replace existing report files (never an input).")
@handle_errors
def gate_command(config, workers, executor, ray_address, only, check_only, debug_on_failure, no_cache, baseline,
                 save_baseline, regression_threshold, json_path, junit_path, markdown_path, html_path, force):
    """Convert and validate every model x target in CONFIG (TOML, or pyproject.toml [tool.fwconv])."""
    from fwconv.gate import report
    from fwconv.gate.baseline import save_baseline as write_baseline
    from fwconv.gate.config import input_paths
    from fwconv.gate.run import run_gate
    from fwconv.progress import echo
    from fwconv.staging import check_writable

    protected = input_paths(config)
    check_writable(*filter(None, (json_path, junit_path, markdown_path, html_path, save_baseline)), force=force,
                   protected=protected)
    check_html_support(html_path)

    def progress(result, done, total):
        cached = " (cached)" if result.get("cached") else f" ({result.get('seconds', 0):.0f}s)"
        echo(f"[{'#' * done:<{total}}] {done}/{total} {result['id']}: {result['status']}{cached}")

    results, meta = run_gate(config, workers=workers, executor=executor, address=ray_address, only=list(only) or None,
                             check_only=check_only, use_cache=not no_cache, baseline=baseline,
                             regression_threshold=regression_threshold, debug_on_failure=debug_on_failure,
                             on_result=progress)
    if save_baseline:
        saved = write_baseline(save_baseline, results, force=force, protected=protected)
        click.echo(f"saved latency baseline for {saved} job(s) to {save_baseline}")
    click.echo(report.to_text(results))
    report.write(results, meta, json_path=json_path, junit_path=junit_path, markdown_path=markdown_path,
                 html_path=html_path, force=force, protected=protected)
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
    @click.option("--model", "only", multiple=True, help="Only these models.")
    @handle_errors
    def command(config, only):
        _golden(config, only, update=update)


_golden_command("save", False, "Write goldens for CONFIG's models (refuses to overwrite existing ones).")
_golden_command("update", True, "Refresh goldens deliberately (after a reviewed change in outputs).")


@main.command("inspect")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--trust-pickle", is_flag=True, help="Allow loading pickled Python objects (runs code from the file).")
@handle_errors
def inspect_command(model, as_json, trust_pickle):
    """Describe MODEL (.tflite, .onnx, SavedModel, .pt, .pt2, .pte): I/O names, shapes, dtypes, layouts,
    quantization, signatures, ops, size and sha256."""
    import json

    from fwconv.models.describe import describe, to_text

    info = describe(model, trust_pickle=trust_pickle)
    click.echo(json.dumps(info, indent=2, default=str) if as_json else to_text(info))


def entry() -> None:
    """The console script (and `python -m fwconv.cli`): the CLI, then a fast exit.

    Why: ending a process that imported torch, litert-torch or TensorFlow spends 1.4-1.8 s in
    Python's finalization (module teardown and the libraries' C++ destructors; no atexit handler
    takes over 20 ms), ~15% of a whole conversion. By the time the CLI returns every artifact is
    published or removed and every scratch folder is gone, so the process flushes its streams and
    logs, runs the atexit handlers, and leaves with os._exit. Where something could still need
    an orderly exit (another non-daemon thread, a live child process) it exits normally."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    from fwconv.procs import exit_fast

    exit_fast(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
