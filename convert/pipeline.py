"""Run a planned route: load the source once (convert/reference.py), run each edge in a scratch
dir, check the artifact, validate it against the source, write the manifest, then publish
atomically.

This module is the one place where conversion uses the validators (the reference run, the
verdict in `validate_artifact`); nothing else in fwconv.convert imports them, and
fwconv.validators never imports fwconv.convert.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

from fwconv.convert.job import Artifact, Job
from fwconv.convert.options import ConvertOptions
from fwconv.convert.planner import family_of
from fwconv.convert.reference import ConversionContext, Reference, dynamic_dims, prepare_source
from fwconv.convert.route_choice import FIRST_PASS_SKIP, RouteTry, choose, most_telling_error, races
from fwconv.dynamic import check_declared_bounds, check_sizes
from fwconv.errors import ConversionError, FwconvError, InputError, ModelLoadError, ParityError
from fwconv.manifest import Manifest, manifest_path, sha256_of, size_of
from fwconv.models.formats import TARGET_SUFFIX, Source, model_file
from fwconv.specs import TensorSpec
from fwconv.staging import check_writable, protected_paths, scratch_dir, staged_outputs

__all__ = ["convert", "ConversionResult", "Source", "prepare_source", "load_reference", "run_route", "resolve_output"]


@dataclasses.dataclass
class ConversionResult:
    artifact: str
    manifest: Manifest
    validation: object | None  # ValidationReport

    def to_text(self) -> str:
        """What was written and how: size, route, notes, ops, the routes tried, stage times."""
        m = self.manifest
        lines = [f"wrote {self.artifact} ({m.size_bytes / 1024:.1f} KiB) via {' -> '.join(m.route)}"]
        lines += [f"  {note}" for note in m.notes]
        worst = (m.extra.get("quantization") or {}).get("per_layer", [])[:3]
        if worst:
            lines.append("  int8 error per op, worst first (rmse/scale, or the op that failed to run): " + ", ".join(
                f"{w['tensor']} ({w['op']}) " + (f"{w['rmse_over_scale']:.2f}" if "rmse_over_scale" in w else "failed to run")
                for w in worst))
        if m.ops and "builtin" in m.ops:
            lines.append(f"  ops: {sum(m.ops['builtin'].values())} builtin ({len(m.ops['builtin'])} kinds), "
                         f"flex: {m.ops['flex'] or 'none'}, custom: {m.ops['custom'] or 'none'}")
        elif m.ops and "kernels" in m.ops:  # an ExecuTorch program: delegated vs kernel ops
            from fwconv.models.executorch import delegation_line

            lines.append(f"  ops: {delegation_line(m.ops)}")
        if m.extra.get("routes"):
            lines.append(f"  routes (kept: {m.extra['chosen_route']}):")
            for r in m.extra["routes"]:
                detail = r.get("error") or (f"skipped: {r['why']}" if r["status"] == "skipped" else
                                            f"{r['status']}, {r.get('size_bytes', 0) / 1024:.1f} KiB" + (
                                                f", p50 {r['p50_ms']:.3f} ms" if "p50_ms" in r else ""))
                lines.append(f"    {r['route']}: {detail}")
        if m.extra.get("repairs"):
            lines.append("  repairs tried (the first route failed parity):")
            lines += [f"    {r['route']}: {r['repair']}{' (aimed at the first divergence)' if r.get('aimed_at_first_divergence') else ''}"
                      f": {r['status']}" for r in m.extra["repairs"]]
        lines.append("  stages: " + ", ".join(f"{s['stage']} {s['seconds']:.1f}s" for s in m.stages))
        return "\n".join(lines)


def default_output(source: str, target: str) -> str:
    base = model_file(source) or source.partition(":")[0]  # a package.module:attr factory: named after it
    stem = os.path.splitext(os.path.basename(base.rstrip(os.sep)))[0]
    return os.path.join(os.path.dirname(os.path.abspath(base)), stem + TARGET_SUFFIX[target])


def resolve_output(output: str | None, source: str, target: str) -> str:
    """`-o` as given (trailing slashes dropped); an existing directory for a file target means
    'put it in there'; no `-o` means next to the source."""
    if not output:
        return default_output(source, target)
    output = output.rstrip(os.sep) or output
    if target != "savedmodel" and os.path.isdir(output):
        return os.path.join(output, os.path.basename(default_output(source, target)))
    return output


def load_reference(ctx: ConversionContext) -> Reference:
    """Load the source into `ctx` (reference runner, sample, reference outputs, dynamic dims):
    here, or in each route worker (convert/route_workers.py); after workers, here again when
    repairs must convert and debug against this process's reference."""
    ref = prepare_source(ctx.source, ctx.options)
    try:
        ref.dynamic = dynamic_dims(ctx.options, ref)
        check_sizes(ref.dynamic, {n: list(a.shape) for n, a in ref.sample.items()})  # before anything converts
    except BaseException:
        ref.close()
        raise
    ctx.reference = ref
    return ref


def run_route(route, k: int, ctx: ConversionContext, *, final_out: str | None = None, overrides: dict | None = None,
              tag: str = "", lock=None) -> RouteTry:
    """Convert along one route in its own scratch folder (the last step to `final_out` when given),
    with a repair's edge settings if any, then validate the result (holding `lock`, when given,
    so routes side by side never time at once). An error is the attempt's, not raised."""
    from fwconv.convert.planner import route_label

    ref, options = ctx.reference, ctx.options
    job = Job(options=options, workdir=os.path.join(ctx.workdir, f"route{k}{tag}"), sample=ref.sample,
              reference_outputs=ref.outputs, torch_source=ref.torch_source,
              source_returns_dict=ref.runner.returns_dict(), overrides=overrides or {}, dynamic=ref.dynamic)
    os.makedirs(job.workdir)
    job.check = _candidate_check(ctx, job, lock) if options.validate else None
    attempt, start = RouteTry(route_label(route), None, job, route=route), time.perf_counter()
    try:
        attempt.artifact = _along(route, ref.artifact, job, final_out)
        flex = (attempt.artifact.ops or {}).get("flex")
        if options.validate and flex:  # --allow-flex: plain LiteRT cannot run these: no honest verdict
            attempt.artifact.notes.append(f"NOT VALIDATED: plain LiteRT cannot run Select-TF ops ({', '.join(flex)}); "
                                          "validate on a runtime linked with the Flex delegate")
        elif options.validate:
            attempt.report = validate_artifact(ctx, attempt.artifact, job, lock=lock)
    except FwconvError as exc:
        attempt.error = exc
    attempt.seconds = round(time.perf_counter() - start, 3)
    return attempt


def _along(route, artifact: Artifact, job: Job, final_out: str | None) -> Artifact:
    for i, edge in enumerate(route):
        limits = [e.max_opset for e in route[i + 1:] if e.max_opset]
        job.max_opset = min(limits) if limits else None
        last = i == len(route) - 1
        out = final_out if last and final_out else os.path.join(job.workdir, f"step{i}{TARGET_SUFFIX[edge.dst]}")
        artifact = edge.run(artifact, job, out)
    return artifact


def _try_routes(routes, ctx: ConversionContext, final_temp: str) -> tuple[list[RouteTry], RouteTry]:
    """Every applicable route (one error is final when there is one route), and the one kept."""
    from fwconv.convert import route_workers

    if ctx.route_jobs:  # the source is prepared in each worker, not here
        tries = route_workers.run_routes(routes, ctx)
    else:
        tries = _routes_in_process(routes, ctx, final_temp)
    if all(t.artifact is None for t in tries):
        raise route_workers.same_error_everywhere(tries) or most_telling_error(tries)
    repairs = []
    if _needs_repair(tries, ctx.options):
        if ctx.reference is None:
            load_reference(ctx)
        repairs = _repair(routes, tries, ctx)
    chosen = choose(tries)
    if chosen.artifact.path != final_temp:
        shutil.move(chosen.artifact.path, final_temp)  # scratch may be on another filesystem (TMPDIR)
        chosen.artifact.path = final_temp
    if len(tries) > 1:
        chosen.artifact.extra = {**chosen.artifact.extra, "routes": [t.summary() for t in tries],
                                 "chosen_route": chosen.label}
    if repairs:
        chosen.artifact.extra = {**chosen.artifact.extra, "repairs": repairs}
        if chosen.report is not None and not chosen.report.parity_passed:
            chosen.report.notes.append("repairs tried, none passed: " + ", ".join(
                f"{r['repair']} ({r['status']})" for r in repairs))
    return tries, chosen


def _routes_in_process(routes, ctx: ConversionContext, final_temp: str) -> list[RouteTry]:
    """Each route in this process, one after the other (one route's error is final); unless the
    routes race (`races`), those after the first that passes are skipped."""
    from fwconv import progress
    from fwconv.convert.planner import route_label

    tries: list[RouteTry] = []
    first_pass = not races(ctx.options)
    with progress.counted("route", len(routes)) as shown:
        for k, route in enumerate(routes):
            if first_pass and any(t.passed for t in tries):
                tries.append(RouteTry(route_label(route), None, None, skipped=FIRST_PASS_SKIP))
                shown.advance(f"{route_label(route)}: skipped")
                continue
            with shown.step(route_label(route)):
                attempt = run_route(route, k, ctx, final_out=final_temp if len(routes) == 1 else None)
            if attempt.error is not None and len(routes) == 1:
                raise attempt.error
            tries.append(attempt)
    return tries


def _needs_repair(tries: list[RouteTry], options: ConvertOptions) -> bool:
    """Only when no route passed, and validation (the judge of a repair) ran. A quantized
    conversion has its own search (selective quantization, convert/quant_repair.py): the route
    repairs target converter mistakes, not quantization noise, and would rerun that search."""
    validated = [t for t in tries if t.report is not None]
    return (options.repair and not options.quantize and bool(validated)
            and not any(t.report.parity_passed for t in validated))


def _repair(routes, tries: list[RouteTry], ctx: ConversionContext) -> list[dict]:
    """Try each failed route's repairs (convert/repair.py), aimed by its first divergence, until one
    passes or the budget is spent; a passing attempt joins `tries`. Returns every attempt."""
    from fwconv.convert import repair as repairs

    attempts, deadline = [], time.monotonic() + ctx.options.repair_budget
    kind = ctx.reference.torch_source.kind if ctx.reference.torch_source else None
    for k, (route, tried) in enumerate(zip(routes, list(tries))):
        if tried.report is None:
            continue
        usable = {fix.name: o for fix in repairs.plan(route) if (o := repairs.resolve(fix, tried.job.used, kind))}
        if not usable:
            continue
        divergence = _first_divergence(ctx, tried.artifact)  # only worth its time when a repair can run
        for fix in [f for f in repairs.plan(route, divergence) if f.name in usable]:
            overrides = usable[fix.name]
            change = {name: getattr(overrides[fix.settings], name) for name, _ in fix.change}
            record = {**fix.summary(), "settings": change, "route": tried.label,
                      "aimed_at_first_divergence": repairs.aimed_at(fix, divergence)}
            if time.monotonic() > deadline:
                attempts.append({**record, "status": "skipped: --repair-budget spent"})
                return attempts
            fixed = run_route(route, k, ctx, overrides=overrides, tag=f"-{fix.name}")
            if isinstance(fixed.error, repairs.RepairNotApplicable):
                continue
            record["status"] = (f"error: {fixed.error.one_line()}" if fixed.error else
                                fixed.report.status if fixed.report else "not validated")
            attempts.append({**record, "seconds": fixed.seconds})
            if fixed.report is not None and fixed.report.parity_passed:
                fixed.label = f"{tried.label} + repair {fix.name}"
                fixed.artifact.notes.append(f"repaired by {fix.name} (avoids {fix.why}): settings {change}")
                tries.append(fixed)
                return attempts
    return attempts


def _first_divergence(ctx: ConversionContext, artifact: Artifact) -> dict | None:
    """The layerwise debugger's first divergence (as a dict), to aim the repairs; None if it cannot tell."""
    report = _explain(ctx.reference.runner, artifact, ctx.reference.sample, ctx.settings, None,
                      precision=ctx.options.artifact_precision)
    return report.to_dict()["first_divergence"] if report is not None else None


def convert(source: str | Source, target: str, output: str | None = None, options: ConvertOptions | None = None,
            validate_settings=None) -> ConversionResult:
    """Convert `source` (a path, a factory, or an already sniffed Source) to `target`, validated."""
    from fwconv.convert import route_workers
    from fwconv.convert.planner import applicable_routes, plan_routes

    options = options or ConvertOptions()
    check_declared_bounds(options.dynamic, options.input_specs)  # a huge MAX: refused before the model loads
    if options.backend and target != "pte":
        raise InputError(f"--backend {options.backend} applies to ExecuTorch (--to pte), not to {target}")
    source = Source.sniff(source)
    if source.format == "hf":  # a language model directory: exported as a generator (convert/generative.py)
        from fwconv.convert.generative import convert_generative

        return convert_generative(source, target, resolve_output(output, source.path, target), options)
    if target == "litertlm":
        raise InputError(f"a .litertlm bundle is made from a language model directory (config.json + safetensors), "
                         f"not from a {source.format} model")
    planned = plan_routes(family_of(source.format), target, via=options.via)
    # a TorchScript source is converted to an ExportedProgram first (convert/ts2ep.py): planned as one
    ts2ep = source.format == "torchscript"
    routes = applicable_routes(planned, "exported" if ts2ep else source.format, options)
    output = resolve_output(output, source.path, target)
    finals = [output] if target == "savedmodel" else [output, manifest_path(output)]
    if options.reduce:  # the bundle's place is checked before anything runs, like every output
        check_writable(output.rstrip("/") + ".repro", force=options.force, protected=protected_paths(source.path))
    t0 = time.perf_counter()
    with staged_outputs(finals, force=options.force, protected=protected_paths(
            source.path, options.inputs, options.calibration)) as temps, scratch_dir() as workdir:
        # >0: routes run side by side in worker processes (convert/route_workers.py); only a race
        # (`--via best`, `--backend auto`) runs every route, so only it can gain from that
        jobs = route_workers.route_jobs(routes) if races(options) and not ts2ep else 0
        ctx = ConversionContext(source, target, options, validate_settings, workdir, (source.path, output), jobs)
        if not jobs:
            load_reference(ctx)
        if ts2ep:
            routes = _torchscript_routes(ctx, planned, routes)
        try:
            _, chosen = _try_routes(routes, ctx, temps[output])
        except FwconvError as exc:
            raise _after_ts2ep(exc, ctx.prelude)
        finally:
            if ctx.reference is not None:
                ctx.reference.close()
        chosen.artifact.extra = {**chosen.artifact.extra, "precision": options.artifact_precision}
        manifest = _manifest(ctx, chosen, output, time.perf_counter() - t0)
        manifest.write(manifest_path(chosen.artifact.path) if target == "savedmodel" else temps[manifest_path(output)])
        report = chosen.report
        failed = report is not None and not report.parity_passed
        explained = None
        if failed and options.debug_on_failure:
            reference = (ctx.reference.torch_source if ctx.reference else None) or source.path
            explained = _explain(reference, chosen.artifact, chosen.job.sample, validate_settings,
                                 (source.path, output), report.notes)
        if failed and options.reduce:
            report.notes.append(_reduce_failure(ctx, chosen, output))
        if failed and not options.keep_failed:
            raise _parity_error("artifact not written", report, explained, chosen.artifact.extra.get("repairs", []),
                                ctx.prelude)
    if failed:
        raise _parity_error("kept by --keep-failed", report, explained, chosen.artifact.extra.get("repairs", []),
                            ctx.prelude)
    return ConversionResult(output, manifest, report)


def _reduce_failure(ctx: ConversionContext, chosen: RouteTry, output: str) -> str:
    """--reduce: the ONNX graph the failed route handed onnx2tf (after fwconv's prepare steps on the
    source or on the route's own export of a PyTorch source) reduced with onnx2tf at the settings
    that ran; a bundle beside the output. The line to show."""
    from fwconv.convert.edges.onnx_to_tf import Onnx2TfSettings
    from fwconv.convert.reduce import CONVERTERS, reduce_to_bundle

    route = chosen.route or []
    converter = CONVERTERS.get(route[-1].dst) if route and route[-1].src == "onnx" else None
    if converter is None:
        return f"reduce: only onnx2tf and onnx2torch conversions are reduced; this artifact came by {chosen.label}"
    prepared = os.path.join(chosen.job.workdir, "onnx2tf", "model.onnx")  # the graph onnx2tf saw (prepare steps done)
    onnx_path = prepared if converter == "onnx2tf" and os.path.isfile(prepared) else \
        ctx.source.path if len(route) == 1 else os.path.join(chosen.job.workdir, f"step{len(route) - 2}.onnx")
    settings = {**chosen.job.settings(Onnx2TfSettings).onnx2tf_kwargs(), "not_use_onnxsim": True} \
        if converter == "onnx2tf" else {}
    bundle = output.rstrip("/") + ".repro"
    found = reduce_to_bundle(onnx_path, converter, settings, bundle, budget=ctx.options.reduce_budget,
                             force=ctx.options.force, protected=protected_paths(ctx.source.path))
    if found.status != "reduced":
        return f"reduce: raw {converter} converts this ONNX graph to a matching model ({found.line}): nothing to reduce"
    return (f"reduce: {found.start_nodes} ONNX nodes -> {len(found.nodes)} ({', '.join(op for op, _ in found.nodes)}): "
            f"{found.line}; repro bundle in {bundle} (python {bundle}/repro.py runs {converter} alone)")


def _torchscript_routes(ctx: ConversionContext, planned, routes):
    """TS2EP on the loaded TorchScript reference: its ExportedProgram feeds the routes a .pt2 takes;
    where it fails or differs, the routes a TorchScript source takes, with the reason."""
    from fwconv import progress
    from fwconv.convert.planner import applicable_routes
    from fwconv.convert.ts2ep import to_exported

    ref = ctx.reference
    with progress.step("ts2ep"):
        exported, record = to_exported(ref.torch_source, ref.sample, ref.outputs, ctx.options, ref.dynamic)
    ctx.prelude = record
    if exported is not None:
        ref.torch_source = exported  # the edges export from it; the reference runner stays TorchScript
        return routes
    try:
        return applicable_routes(planned, "torchscript", ctx.options)
    except InputError as exc:
        raise InputError(f"{exc.one_line()} (and TS2EP {record.status}: {record.detail})") from None


def _after_ts2ep(error: FwconvError, prelude) -> FwconvError:
    """The error of the TorchScript road, saying the modern road was tried first and why it was
    left (the one line a user gets must name both steps that failed)."""
    if prelude is not None and prelude.status in ("failed", "differs"):
        error.hint = "; ".join(filter(None, [f"TS2EP {prelude.status} first: {prelude.detail[:200]}", error.hint]))
    return error


def _manifest(ctx: ConversionContext, chosen: RouteTry, output: str, seconds: float) -> Manifest:
    current, job, source = chosen.artifact, chosen.job, ctx.source
    exists = os.path.exists(source.path)
    dynamic = [{**d.to_dict(), "input": name} for name, per in job.dynamic.items() for d in per.values()]
    return Manifest(
        artifact=os.path.abspath(output), format=ctx.target,
        source={"path": os.path.abspath(source.path) if exists else source.path, "format": source.format,
                "sha256": sha256_of(source.path) if exists else None},
        route=[family_of(source.format)] + [e.dst for e in chosen.route],
        tools={k: v for e in chosen.route for k, v in _tools_of(e).items()} | current.tools,
        inputs=current.inputs, outputs=current.outputs, ops=current.ops,
        size_bytes=size_of(current.path), sha256=sha256_of(current.path),
        stages=([ctx.prelude.stage()] if ctx.prelude else []) + [dataclasses.asdict(s) for s in job.stages]
        + [{"stage": "total", "status": "ok", "seconds": round(seconds, 3)}],
        notes=([ctx.prelude.note()] if ctx.prelude else []) + current.notes,
        extra={**current.extra, **({"interface": current.interface.to_dict()} if current.interface else {}),
               **({"dynamic": dynamic} if dynamic else {}),
               **({"ts2ep": dataclasses.asdict(ctx.prelude)} if ctx.prelude else {})},
        validation=_validation_summary(chosen.report),
    )


def _parity_error(what: str, report, explained, repairs: list[dict], prelude=None) -> ParityError:
    tried = f"; repairs tried, none passed: {', '.join(r['repair'] for r in repairs)}" if repairs else ""
    error = ParityError(f"the converted model does not match the source ({what}): " + "; ".join(report.failures())
                        + tried, report=report)
    error.debug = explained
    return _after_ts2ep(error, prelude)


def _explain(reference, artifact: Artifact, sample: dict, settings, names, notes=None,
             precision: str | None = None):
    """The layerwise debugger on the reference and a failed artifact (still in staging), with the
    validator's inputs and tolerances. A debugger error becomes a note, never the verdict."""
    from fwconv.errors import FwconvError
    from fwconv.validators.compare import ValidateSettings
    from fwconv.validators.debug import DebugSettings, debug
    from fwconv.validators.metrics import Tolerance

    precision = precision or artifact.extra.get("precision", "fp32")
    settings = settings or ValidateSettings(tolerance=Tolerance(precision=precision))
    try:
        return debug(reference, artifact.path, settings=DebugSettings(dataclasses.replace(settings, latency=None)),
                     user_inputs=sample, candidate_interface=artifact.interface, names=names)
    except FwconvError as exc:
        if notes is not None:
            notes.append(f"the layerwise debugger could not explain it: {exc.one_line()}")
        return None


def _tools_of(edge) -> dict[str, str]:
    from fwconv.manifest import tool_versions

    return tool_versions(*edge.tools)


def _validation_summary(report) -> dict | None:
    if report is None:
        return None
    return {"status": report.status, "samples": report.samples,
            "outputs": {o.name: {"passed": o.passed, "max_abs_err": o.metrics.get("max_abs_err"),
                                 "scaled_max_err": o.metrics.get("scaled_max_err"), "cosine": o.metrics.get("cosine")}
                        for o in report.outputs},
            "latency_ratio": report.latency_ratio,
            **({"shapes": report.shapes} if report.shapes else {})}


def _candidate_check(ctx: ConversionContext, job: Job, lock=None):
    """Job.check: the validator's verdict on an intermediate candidate (selective quantization's
    search), with the final validation's reference, inputs and tolerances and a short latency run
    (its p50 is the latency cost the manifest reports)."""
    from fwconv.validators.latency import LatencySettings

    def check(artifact: Artifact) -> dict:
        settings = _settings_for(ctx.settings, job.options)
        settings = dataclasses.replace(settings, latency=LatencySettings(warmup_runs=3, runs=20))
        try:
            report = validate_artifact(ctx, artifact, job, settings=settings, stage="quantize:check", lock=lock)
        except FwconvError as exc:  # does not load or run (XNNPACK refuses a scale, a DIV by zero): failed
            return {"passed": False, "cosine": None, "snr_db": None, "failure": exc.one_line(), "p50_ms": None}
        worst = lambda key: min((o.metrics.get(key) for o in report.outputs if o.metrics.get(key) is not None), default=None)
        cand = report.latency.get("candidate")
        return {"passed": report.parity_passed, "cosine": worst("cosine"), "snr_db": worst("snr_db"),
                "failure": "; ".join(report.failures()) or None, "p50_ms": round(cand.p50_ms, 4) if cand else None}
    return check


def _settings_for(settings, options: ConvertOptions):
    """The validation settings of a conversion: the caller's, else the precision's defaults;
    --min-cosine (the selective-quantization target) sets the cosine floor of both."""
    from fwconv.validators.compare import ValidateSettings
    from fwconv.validators.metrics import Tolerance

    settings = settings or ValidateSettings(tolerance=Tolerance(precision=options.artifact_precision))
    target = getattr(options, "min_cosine", None)
    if target is None:
        return settings
    per_output = {k: dataclasses.replace(t, min_cosine=target) for k, t in settings.per_output.items()}
    return dataclasses.replace(settings, tolerance=dataclasses.replace(settings.tolerance, min_cosine=target),
                               per_output=per_output)


def validate_artifact(ctx: ConversionContext, artifact: Artifact, job: Job, *, settings=None,
                      stage: str = "validate", lock=None):
    """The validator's verdict on one artifact against the reference (under `lock`, when given)."""
    import contextlib

    from fwconv.validators.compare import compare_runners
    from fwconv.validators.runners import make_runner

    ref = ctx.reference
    settings = _settings_for(settings or ctx.settings, job.options)
    if job.dynamic:  # the artifact must hold at other sizes of the dims it keeps variable
        settings = dataclasses.replace(settings, dynamic=tuple({d for per in job.dynamic.values() for d in per.values()}))
    with job.stage(stage), (lock or contextlib.nullcontext()):
        try:
            cand = make_runner(artifact.path, fmt=artifact.format, threads=settings.threads).activate()
        except ModelLoadError as exc:  # fwconv's own artifact: a converter failure, not the user's input
            raise ConversionError("check", f"the converted artifact does not load: {exc}") from exc
        try:
            user = ref.sample if job.options.inputs else None
            specs = None if user else [TensorSpec(n, list(a.shape), a.dtype.name) for n, a in ref.sample.items()]
            return compare_runners(ref.runner, cand, settings=settings, user_inputs=user, ref_specs=specs,
                                   candidate_interface=artifact.interface,
                                   labels=({"model": ctx.labels[0], "runtime": ref.runner.name, "device": ref.runner.device},
                                           {"model": ctx.labels[1], "runtime": cand.name, "device": cand.device}))
        finally:
            cand.deactivate()
