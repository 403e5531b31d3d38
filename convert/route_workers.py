"""Run `--via auto`'s routes in worker processes, side by side, instead of one after the other.

Why: a route is mostly cold imports and single-threaded converter work (litert-torch; torch.onnx +
TensorFlow + onnx2tf), so on 2 cores two routes at once take about as long as the slower one.
Each worker prepares the source itself (it needs the loaded module to convert anyway; the sample
is seeded, so every worker sees the same bytes), converts along its one route into the shared
scratch folder and validates its artifact. The parent imports no framework: it only collects the
RouteTry records (artifacts stay on disk) and chooses. A worker that crashes is that route's
ConversionError; the other route is still used. On an interrupt the parent kills the workers.

FWCONV_ROUTE_JOBS: how many route workers run at once. Unset: one per route when at least two
cores are idle (1-minute load average), else in-process. N: up to N at once (memory is the sum of
the workers'). 1: one worker at a time. 0: in-process, one route after the other (no workers;
frameworks stay loaded in the caller, as a warm gate worker wants).
"""

from __future__ import annotations

import os
from multiprocessing.connection import wait

ENV = "FWCONV_ROUTE_JOBS"


def route_jobs(routes: list) -> int:
    """Workers to run at once for these routes; 0 means in-process."""
    from fwconv.errors import InputError

    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return _default_jobs(len(routes))
    if not raw.isdigit():
        raise InputError(f"{ENV}={raw!r} is not a whole number",
                         hint="0 runs routes in-process, 1 one worker at a time, N up to N at once")
    return min(int(raw), len(routes))


def _default_jobs(n_routes: int) -> int:
    """Side by side only on cores that are idle now: a worker repeats the source's import, load and
    reference run, which pays off on a free core and costs time on a busy one (measured: on 2
    cores at load ~3-4, two workers took 1.0-1.2x the in-process time and 1.3x its memory)."""
    idle = (os.cpu_count() or 1) - os.getloadavg()[0]
    return min(n_routes, int(idle)) if n_routes > 1 and idle >= 2 else 0


def _serve(conn, source, target: str, k: int, options, settings, labels, workdir: str, lock) -> None:
    """Worker: prepare the source, convert along route k, validate (holding the shared lock, so
    no two routes' timings overlap); send back a RouteTry."""
    from fwconv import procs, progress
    from fwconv.errors import StageTimeout

    procs.ignore_sigint()
    progress.configure(False)  # the parent shows the routes; workers' lines would interleave
    try:
        attempt = _one_route(source, target, k, options, settings, labels, workdir, lock)
        if attempt.error is not None:  # typed errors cross the pipe encoded (their __init__ differ)
            conn.send(("error", procs.encode_error(attempt.error)))
        else:
            conn.send(("ok", attempt))
    except StageTimeout as exc:  # ends the whole conversion, in the parent too
        conn.send(("timeout", (exc.stage, exc.seconds)))
    except Exception as exc:
        conn.send(("error", procs.encode_error(exc)))


def _one_route(source, target, k, options, settings, labels, workdir, lock):
    from fwconv.convert import pipeline
    from fwconv.convert.reference import ConversionContext

    routes = _routes(source, target, options)
    ctx = ConversionContext(source, target, options, settings, workdir, labels)
    pipeline.load_reference(ctx)
    try:
        attempt = pipeline.run_route(routes[k], k, ctx, lock=lock)
    finally:
        ctx.reference.close()
    if attempt.job is not None:  # a loaded module, the edges and the validator closure stay here
        attempt.job.torch_source, attempt.job.check = None, None
    attempt.route = None
    return attempt


def _routes(source, target: str, options) -> list:
    from fwconv.convert.planner import applicable_routes, family_of, plan_routes

    return applicable_routes(plan_routes(family_of(source.format), target, via=options.via), source.format, options)


def run_routes(routes: list, ctx) -> list:
    """Every route in a worker, `ctx.route_jobs` at a time; RouteTry records in route order."""
    import multiprocessing as mp

    from fwconv import procs, progress
    from fwconv.convert.planner import route_label

    lock, jobs, source, target = mp.get_context("spawn").Lock(), ctx.route_jobs, ctx.source, ctx.target
    args = (ctx.options, ctx.settings, ctx.labels, ctx.workdir, lock)
    running: dict = {}  # connection -> (k, process)
    tries: dict[int, object] = {}
    pending = list(range(len(routes)))
    try:
        with progress.counted("route", len(routes)) as shown:
            while pending or running:
                while pending and len(running) < jobs:
                    k = pending.pop(0)
                    proc, conn = procs.spawn(_serve, source, target, k, *args, name=f"fwconv route: {route_label(routes[k])}")
                    running[conn] = (k, proc)
                for conn in wait(list(running)):
                    k, proc = running.pop(conn)
                    tries[k] = _collect(conn, proc, routes[k])
                    shown.advance(route_label(routes[k]))
    finally:
        for conn, (_, proc) in running.items():  # an interrupt (or a bug): no worker outlives us
            procs.stop(proc)
            conn.close()
    return [tries[k] for k in range(len(routes))]


def _collect(conn, proc, route):
    """The worker's RouteTry, or one carrying its error (typed) or its crash."""
    from fwconv import procs
    from fwconv.convert.route_choice import RouteTry
    from fwconv.convert.planner import route_label
    from fwconv.errors import ConversionError

    label = route_label(route)
    try:
        status, payload = conn.recv()
    except (EOFError, ConnectionError, OSError):
        procs.stop(proc)
        error = ConversionError("convert", f"the worker converting {label} crashed (exit code {proc.exitcode})",
                                hint="the other routes were still tried; FWCONV_ROUTE_JOBS=0 runs it in-process")
        return RouteTry(label, None, None, error=error)
    finally:
        conn.close()
    proc.join(30)
    procs.stop(proc)
    if status == "timeout":
        from fwconv.errors import StageTimeout

        raise StageTimeout(*payload)
    if status == "error":
        return RouteTry(label, None, None, error=procs.decode_error(payload))
    payload.route = route
    return payload


def same_error_everywhere(tries: list):
    """When every route failed the same way (bad input found while preparing the source, which
    each worker does), that one error, not the same message once per route."""
    lines = {t.error.one_line() if t.error is not None else None for t in tries}
    return tries[0].error if len(lines) == 1 and None not in lines else None

