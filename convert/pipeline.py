"""Run a planned route: load the source, make sample inputs, run each edge in a scratch dir,
check the artifact, validate it against the source, write the manifest, then publish atomically.

This module is the one place where conversion uses the validators (the reference run in
`prepare_source`, the verdict in `_validate`); nothing else in fwconv.convert imports them, and
fwconv.validators never imports fwconv.convert.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import numpy as np

from fwconv.models.formats import TARGET_SUFFIX, detect_format, model_file
from fwconv.convert.job import Artifact, Job
from fwconv.convert.options import ConvertOptions
from fwconv.convert.planner import family_of
from fwconv.convert.route_choice import FIRST_PASS_SKIP, RouteTry, choose, most_telling_error, races
from fwconv.dynamic import check_declared_bounds, check_sizes
from fwconv.errors import ConversionError, InputError, ModelLoadError, ParityError
from fwconv.manifest import Manifest, manifest_path, sha256_of, size_of
from fwconv.specs import TensorSpec, bind_arrays, load_npz, name_positional
from fwconv.staging import protected_paths, scratch_dir, staged_outputs


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


def _sample_specs(options: ConvertOptions, names: list[str], recorded: list[TensorSpec] | None) -> list[TensorSpec]:
    """Input specs from --input-shape, with unnamed ones taking the model's names by position."""
    if not options.input_specs:
        if recorded:
            return recorded
        raise InputError("the model does not record its input shapes",
                         hint="give them with --input-shape 1,3,224,224 (repeatable) or --inputs FILE.npz")
    return name_positional(options.input_specs, names)


def _layout_of(shape, family: str) -> str | None:
    if len(shape) != 4:
        return None
    return "NCHW" if family in ("torch", "onnx") else "NHWC"


def prepare_source(source: str, options: ConvertOptions):
    """Load the source, bind sample inputs and compute reference outputs. Returns (artifact, job parts)."""
    from fwconv.validators.inputs import parse_ranges, synthetic_inputs
    from fwconv.validators.runners import make_runner

    fmt = detect_format(source)
    family = family_of(fmt)
    torch_source, prepared = None, None
    if fmt == "onnx":
        from fwconv.convert.onnx_prepare import prepare_onnx_source

        # A corrupt file is the user's input error, not a runtime failure. An opset older than the
        # runtimes take is upgraded once, on a private copy that the runner and the edges read.
        prepared = prepare_onnx_source(source)
    if family == "torch":
        from fwconv.models.torch_source import load_torch_source

        start = time.perf_counter()
        torch_source = load_torch_source(source, trust_pickle=options.trust_pickle)
        loaded = time.perf_counter() - start
        runner = make_runner(torch_source)
    else:
        model_path = prepared.path if prepared else source
        runner, loaded = make_runner(model_path, fmt=fmt, trust_pickle=options.trust_pickle), 0.0
    if prepared:
        prepared.bind(runner)  # the copy lives as long as the reference runner
    runner.activate()
    runner.load_seconds += loaded  # the source was loaded before the runner wrapped it
    names = runner.input_names()
    if options.inputs_file:
        arrays = load_npz(options.inputs_file)
        sample = bind_arrays(arrays, [TensorSpec(n, []) for n in names[: len(arrays)]])
    else:
        try:
            recorded = runner.input_specs()
        except InputError:
            recorded = None
        for spec in recorded or []:  # TF models often leave only the batch open: take 1
            if spec.shape and spec.shape[0] is None and all(isinstance(d, int) for d in spec.shape[1:]):
                spec.shape[0] = 1
        specs = _sample_specs(options, names, recorded)
        sample = synthetic_inputs(specs, seed=0, ranges=parse_ranges(options.input_ranges),
                                  int_bounds=runner.index_bounds())
    reference_outputs = runner.infer(sample)
    inputs = [TensorSpec(n, list(a.shape), a.dtype.name, _layout_of(a.shape, family)) for n, a in sample.items()]
    outputs = [TensorSpec(n, list(a.shape), a.dtype.name, _layout_of(a.shape, family)) for n, a in reference_outputs.items()]
    artifact = Artifact(path=source, format=fmt, inputs=inputs, outputs=outputs)
    if prepared:
        prepared.annotate(artifact)
    return artifact, runner, torch_source, sample, reference_outputs


def _run_route(route, k: int, artifact: Artifact, ctx: dict, final_out: str | None,
               repair: dict | None = None, tag: str = "") -> RouteTry:
    """Convert along one route in its own scratch folder (the last step to `final_out` when given),
    with a repair's overrides if any, then validate the result."""
    from fwconv.convert.planner import route_label

    options = ctx["options"]
    job = Job(options=options, workdir=os.path.join(ctx["workdir"], f"route{k}{tag}"), sample=ctx["sample"],
              reference_outputs=ctx["ref_outputs"], torch_source=ctx["torch_source"],
              source_returns_dict=ctx["ref_runner"].returns_dict(), repair=repair or {}, dynamic=ctx["dynamic"])
    os.makedirs(job.workdir)
    job.check = _candidate_check(ctx, job) if options.validate else None
    attempt = RouteTry(route_label(route), None, job, route=route)
    current = artifact
    for i, edge in enumerate(route):
        limits = [e.max_opset for e in route[i + 1:] if e.max_opset]
        job.max_opset = min(limits) if limits else None
        last = i == len(route) - 1
        out = final_out if last and final_out else os.path.join(job.workdir, f"step{i}{TARGET_SUFFIX[edge.dst]}")
        current = edge.run(current, job, out)
    attempt.artifact = current
    flex = (current.ops or {}).get("flex")
    if options.validate and flex:
        # --allow-flex: plain LiteRT cannot run these, so there is no honest verdict here.
        current.notes.append(f"NOT VALIDATED: plain LiteRT cannot run Select-TF ops ({', '.join(flex)}); "
                             "validate on a runtime linked with the Flex delegate")
    elif options.validate:
        attempt.report = _validate(ctx["ref_runner"], current, ctx["sample"], job, ctx["settings"],
                                   labels=ctx["labels"])
    return attempt


def _try_routes(routes, artifact: Artifact, ctx: dict, final_temp: str) -> tuple[list[RouteTry], RouteTry]:
    """Every applicable route (one error is final when there is one route), and the one kept."""
    from fwconv.convert import route_workers

    if ctx.get("route_jobs"):  # the source is prepared in each worker, not here
        tries = route_workers.run_routes(routes, ctx["source"], ctx["target"], ctx, ctx["route_jobs"])
    else:
        tries = _routes_in_process(routes, artifact, ctx, final_temp)
    if all(t.artifact is None for t in tries):
        raise route_workers.same_error_everywhere(tries) or most_telling_error(tries)
    repairs = []
    if _needs_repair(tries, ctx["options"]):
        repairs = _repair(routes, tries, artifact or prepare_context(ctx), ctx)
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


def _routes_in_process(routes, artifact: Artifact, ctx: dict, final_temp: str) -> list[RouteTry]:
    """Each route in this process, one after the other (one route's error is final); unless the
    routes race (`races`), those after the first that passes are skipped."""
    from fwconv import progress
    from fwconv.convert.planner import route_label
    from fwconv.errors import FwconvError

    tries: list[RouteTry] = []
    first_pass = not races(ctx["options"])
    with progress.counted("route", len(routes)) as shown:
        for k, route in enumerate(routes):
            if first_pass and any(t.passed for t in tries):
                tries.append(RouteTry(route_label(route), None, None, skipped=FIRST_PASS_SKIP))
                shown.advance(f"{route_label(route)}: skipped")
                continue
            try:
                with shown.step(route_label(route)):
                    tries.append(_run_route(route, k, artifact, ctx, final_temp if len(routes) == 1 else None))
            except FwconvError as exc:
                if len(routes) == 1:
                    raise
                tries.append(RouteTry(route_label(route), None, None, error=exc))
    return tries


def prepare_context(ctx: dict) -> Artifact:
    """Load the source into `ctx` (reference runner, sample, reference outputs, dynamic dims):
    here, or in each route worker (convert/route_workers.py); after workers, here again when
    repairs must convert and debug against this process's reference."""
    options = ctx["options"]
    artifact, ctx["ref_runner"], ctx["torch_source"], ctx["sample"], ctx["ref_outputs"] = \
        prepare_source(ctx["source"], options)
    ctx["dynamic"] = _dynamic_dims(options, artifact, ctx["torch_source"], ctx["sample"], ctx["ref_runner"])
    check_sizes(ctx["dynamic"], {n: list(a.shape) for n, a in ctx["sample"].items()})  # before anything converts
    return artifact


def _needs_repair(tries: list[RouteTry], options: ConvertOptions) -> bool:
    """Only when no route passed, and validation (the judge of a repair) ran. A quantized
    conversion has its own search (selective quantization, convert/quant_repair.py): the route
    repairs target converter mistakes, not quantization noise, and would rerun that search."""
    validated = [t for t in tries if t.report is not None]
    return (options.repair and not options.quantize and bool(validated)
            and not any(t.report.parity_passed for t in validated))


def _repair(routes, tries: list[RouteTry], artifact: Artifact, ctx: dict) -> list[dict]:
    """Try each failed route's repairs (convert/repair.py), aimed by its first divergence, until one
    passes or the budget is spent; a passing attempt joins `tries`. Returns every attempt."""
    from fwconv.convert import repair as repairs
    from fwconv.errors import FwconvError

    options, attempts = ctx["options"], []
    deadline = time.monotonic() + options.repair_budget
    kind = ctx["torch_source"].kind if ctx["torch_source"] else None
    for k, (route, tried) in enumerate(zip(routes, list(tries))):
        usable = {fix.name: o for fix in repairs.plan(route) if (o := repairs.resolve(fix, tried.job.stages, kind))}
        if tried.report is None or not usable:
            continue
        divergence = _first_divergence(ctx, tried.artifact)  # only worth its time when a repair can run
        for fix in [f for f in repairs.plan(route, divergence) if f.name in usable]:
            overrides = usable[fix.name]
            record = {**fix.summary(), "settings": overrides, "route": tried.label,
                      "aimed_at_first_divergence": repairs.aimed_at(fix, divergence)}
            if time.monotonic() > deadline:
                attempts.append({**record, "status": "skipped: --repair-budget spent"})
                return attempts
            start = time.perf_counter()
            try:
                fixed = _run_route(route, k, artifact, ctx, None, repair=overrides, tag=f"-{fix.name}")
                record["status"] = fixed.report.status if fixed.report else "not validated"
            except repairs.RepairNotApplicable:
                continue
            except FwconvError as exc:
                fixed, record["status"] = None, f"error: {exc.one_line()}"
            attempts.append({**record, "seconds": round(time.perf_counter() - start, 2)})
            if fixed is not None and fixed.report is not None and fixed.report.parity_passed:
                fixed.label = f"{tried.label} + repair {fix.name}"
                fixed.artifact.notes.append(f"repaired by {fix.name} (avoids {fix.why}): settings {overrides}")
                tries.append(fixed)
                return attempts
    return attempts


def _first_divergence(ctx: dict, artifact: Artifact) -> dict | None:
    """The layerwise debugger's first divergence (as a dict), to aim the repairs; None if it cannot tell."""
    report = _explain(ctx["ref_runner"], artifact, ctx["sample"], ctx["settings"], None,
                      precision=ctx["options"].precision)
    return report.to_dict()["first_divergence"] if report is not None else None


def convert(source: str, target: str, output: str | None = None, options: ConvertOptions | None = None,
            validate_settings=None) -> ConversionResult:
    from fwconv.convert import route_workers
    from fwconv.convert.planner import applicable_routes, plan_routes

    options = options or ConvertOptions()
    check_declared_bounds(options.dynamic, options.input_specs)  # a huge MAX: refused before the model loads
    if options.backend and target != "pte":
        raise InputError(f"--backend {options.backend} applies to ExecuTorch (--to pte), not to {target}")
    fmt = detect_format(source)
    routes = applicable_routes(plan_routes(family_of(fmt), target, via=options.via), fmt, options)
    output = resolve_output(output, source, target)
    is_dir_target = target == "savedmodel"
    finals = [output] if is_dir_target else [output, manifest_path(output)]
    protected = protected_paths(source, options.inputs_file, options.calibration)
    t0 = time.perf_counter()
    with staged_outputs(finals, force=options.force, protected=protected) as temps, scratch_dir() as workdir:
        # >0: routes run side by side in worker processes (convert/route_workers.py); only a race
        # (`--via best`, `--backend auto`) runs every route, so only it can gain from that
        jobs = route_workers.route_jobs(routes) if races(options) else 0
        ctx = dict(options=options, workdir=workdir, settings=validate_settings, labels=(source, output),
                   source=source, target=target, route_jobs=jobs, ref_runner=None)
        artifact = None if jobs else prepare_context(ctx)
        try:
            tries, chosen = _try_routes(routes, artifact, ctx, temps[output])
        finally:
            if ctx["ref_runner"] is not None:
                ctx["ref_runner"].deactivate()
        current, job, report = chosen.artifact, chosen.job, chosen.report
        torch_source, sample = ctx.get("torch_source"), job.sample
        current.extra = {**current.extra, "precision": options.precision}  # the validator's default thresholds
        route = chosen.route
        manifest = Manifest(
            artifact=os.path.abspath(output), format=target,
            source={"path": os.path.abspath(source) if os.path.exists(source) else source, "format": fmt,
                    "sha256": sha256_of(source) if os.path.exists(source) else None},
            route=[family_of(fmt)] + [e.dst for e in route],
            tools={k: v for e in route for k, v in _tools_of(e).items()} | current.tools,
            inputs=current.inputs, outputs=current.outputs, ops=current.ops,
            size_bytes=size_of(current.path), sha256=sha256_of(current.path),
            stages=[dataclasses.asdict(s) for s in job.stages] + [{"stage": "total", "status": "ok",
                                                                    "seconds": round(time.perf_counter() - t0, 3)}],
            notes=current.notes,
            extra={**current.extra, **({"interface": current.interface.to_dict()} if current.interface else {}),
                   **({"dynamic": [{**d.to_dict(), "input": name} for name, per in job.dynamic.items()
                                    for d in per.values()]} if job.dynamic else {})},
            validation=_validation_summary(report),
        )
        manifest.write(manifest_path(current.path) if is_dir_target else temps[manifest_path(output)])
        failed = report is not None and not report.parity_passed
        explained = None
        if failed and options.debug_on_failure:
            explained = _explain(torch_source or source, current, sample, validate_settings, (source, output), report.notes)
        if failed and not options.keep_failed:
            raise _parity_error("artifact not written", report, explained, current.extra.get("repairs", []))
    if failed:
        raise _parity_error("kept by --keep-failed", report, explained, current.extra.get("repairs", []))
    return ConversionResult(output, manifest, report)


def _parity_error(what: str, report, explained, repairs: list[dict]) -> ParityError:
    tried = f"; repairs tried, none passed: {', '.join(r['repair'] for r in repairs)}" if repairs else ""
    error = ParityError(f"the converted model does not match the source ({what}): " + "; ".join(report.failures())
                        + tried, report=report)
    error.debug = explained
    return error


def _explain(reference, artifact: Artifact, sample: dict[str, np.ndarray], settings, names, notes=None,
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


def _dynamic_dims(options: ConvertOptions, artifact: Artifact, torch_source, sample, runner) -> dict:
    """{input: {dim: DynamicDim}}: the user's --dynamic, and the dims the source already keeps
    variable (a .pt2's torch.export.Dims, an ONNX model's symbolic dims, a TF/Keras signature's
    open dims). A dim the user asks for that the source fixed is an error: its graph was
    specialised to that size."""
    from fwconv import dynamic as dyn

    own: tuple = ()
    if torch_source is not None and torch_source.kind == "exported":
        own = dyn.of_exported_program(torch_source.model, list(sample))
        _refuse_fixed(artifact, options.dynamic, own, "exported with static shapes",
                      "export it with torch.export.Dim (dynamic_shapes=...) at a size above 1, or give a factory")
        _refuse_wider(artifact, options.dynamic, own)
    elif artifact.format == "onnx":
        from fwconv.models.onnx import input_dim_params, io_specs, load_onnx

        model = load_onnx(artifact.path, check=False)
        own = dyn.of_onnx_inputs(io_specs(model)[0], input_dim_params(model))
        _refuse_fixed(artifact, options.dynamic, own, "its ONNX graph fixes that size",
                      "export the ONNX model with that dim symbolic (torch.onnx.export dynamic_shapes=/dynamic_axes=)")
    elif artifact.format in ("savedmodel", "keras"):
        try:
            specs = runner.input_specs()
        except InputError:  # a signature fwconv cannot read shapes from: the user's --input-shape stands
            specs = []
        open_dims = tuple(dyn.DynamicDim(s.name, i, "") for s in specs for i, d in enumerate(s.shape) if d is None)
        if specs:
            _refuse_fixed(artifact, options.dynamic, open_dims, "its TensorFlow signature fixes that size",
                          "save the model with None in that dim of its input (keras.Input(shape=(None, ...)))")
        own = dyn.tf_signature_dims(specs)
    shapes = {n: list(a.shape) for n, a in sample.items()}
    table = dyn.per_input(tuple(own) + tuple(options.dynamic), shapes)
    dyn.check_examples(options.dynamic, table, shapes)
    return table


def _refuse_wider(artifact: Artifact, asked: tuple, own: tuple) -> None:
    """A MAX above the range the .pt2 was exported with: its graph's guards hold only inside it."""
    for d in asked:
        for o in own:
            if o.dim == d.dim and d.input in (None, o.input) and o.max is not None and (d.max or 0) > o.max:
                raise InputError(f"{artifact.path}: dim {o.dim} of {o.input} was exported for sizes {o.min}..{o.max}, "
                                 f"so --dynamic cannot stretch it to {d.max}",
                                 hint="ask for a MAX inside the exported range, or re-export with a wider torch.export.Dim")


def _refuse_fixed(artifact: Artifact, asked: tuple, own: tuple, why: str, hint: str) -> None:
    """A dim the user asks to vary that the source's graph fixed: refused (its graph was built for that size)."""
    fixed = [d for d in asked if not any(o.dim == d.dim and d.input in (None, o.input) for o in own)]
    if fixed:
        raise InputError(f"{artifact.path}: {why} (dim {fixed[0].dim} of {fixed[0].input or 'its inputs'} is fixed), "
                         "so --dynamic cannot make it variable", hint=hint)


def _candidate_check(ctx: dict, job: Job):
    """Job.check: the validator's verdict on an intermediate candidate (selective quantization's
    search), with the final validation's reference, inputs and tolerances and a short latency run
    (its p50 is the latency cost the manifest reports)."""
    from fwconv.errors import FwconvError
    from fwconv.validators.latency import LatencySettings

    def check(artifact: Artifact) -> dict:
        settings = _settings_for(ctx["settings"], job.options)
        settings = dataclasses.replace(settings, latency=LatencySettings(warmup_runs=3, runs=20))
        try:
            report = _validate(ctx["ref_runner"], artifact, ctx["sample"], job, settings, labels=ctx["labels"],
                               stage="quantize:check")
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

    settings = settings or ValidateSettings(tolerance=Tolerance(precision=options.precision))
    target = getattr(options, "min_cosine", None)
    if target is None:
        return settings
    per_output = {k: dataclasses.replace(t, min_cosine=target) for k, t in settings.per_output.items()}
    return dataclasses.replace(settings, tolerance=dataclasses.replace(settings.tolerance, min_cosine=target),
                               per_output=per_output)


def _validate(ref_runner, artifact: Artifact, sample: dict[str, np.ndarray], job: Job, settings, *, labels: tuple[str, str],
              stage: str = "validate"):
    from fwconv.validators.compare import compare_runners
    from fwconv.validators.runners import make_runner

    settings = _settings_for(settings, job.options)
    if job.dynamic:  # the artifact must hold at other sizes of the dims it keeps variable
        settings = dataclasses.replace(settings, dynamic=tuple({d for per in job.dynamic.values() for d in per.values()}))
    interface = artifact.interface
    with job.stage(stage):
        try:
            cand = make_runner(artifact.path, fmt=artifact.format, threads=settings.threads).activate()
        except ModelLoadError as exc:  # fwconv's own artifact: a converter failure, not the user's input
            raise ConversionError("check", f"the converted artifact does not load: {exc}") from exc
        try:
            user = sample if job.options.inputs_file else None
            report = compare_runners(ref_runner, cand, settings=settings, user_inputs=user,
                                     ref_specs=None if user else [TensorSpec(n, list(a.shape), a.dtype.name) for n, a in sample.items()],
                                     candidate_interface=interface,
                                     labels=({"model": labels[0],
                                              "runtime": ref_runner.name, "device": ref_runner.device},
                                             {"model": labels[1], "runtime": cand.name, "device": cand.device}))
        finally:
            cand.deactivate()
    return report
