"""Run a gate: plan jobs from the config, reuse cached results, execute the rest, check baselines."""

from __future__ import annotations

import os
from typing import Callable

from fwconv.errors import InputError
from fwconv.progress import counted

from fwconv.gate.baseline import check_regressions, load_baseline
from fwconv.gate.cache import GateCache, job_key
from fwconv.gate.config import jobs_from_config
from fwconv.gate.executors import execute
from fwconv.gate.result import JobResult


def run_gate(config: str, *, workers: int = 1, executor: str = "local", address: str | None = None,
             only: list[str] | None = None, check_only: bool = False, use_cache: bool = True,
             baseline: str | None = None, regression_threshold: float = 0.25, debug_on_failure: bool = False,
             on_result: Callable[[JobResult, int, int], None] = lambda result, done, total: None
             ) -> tuple[list[JobResult], dict]:
    """Results in config order (fwconv.gate.result.JobResult) and run metadata."""
    jobs, meta = jobs_from_config(config, only=only)
    by_id = {j.id: j.to_dict() for j in jobs}
    if debug_on_failure:  # --debug-on-failure: as if every job's config said debug_on_failure = true
        for job in by_id.values():
            job["settings"]["debug_on_failure"] = True
    base = load_baseline(baseline) if baseline else None  # a bad baseline fails before any work
    try:
        os.makedirs(meta["output_dir"], exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output_dir {meta['output_dir']}: {exc.strerror or exc}") from exc
    cache = GateCache(meta["output_dir"])
    keys = {job_id: job_key(job, check_only) for job_id, job in by_id.items()}
    results, todo = [], []
    with counted("gate job", len(jobs)) as shown:  # the parent counts; workers show nothing
        for job_id, job in by_id.items():
            hit = cache.lookup(job, keys[job_id]) if use_cache else None
            if hit:
                results.append(hit)
                shown.advance(hit.id)
                on_result(hit, len(results), len(jobs))
            else:
                todo.append(job)

        def progress(result: JobResult) -> None:
            results.append(result)
            cache.store(by_id[result.id], keys[result.id], result)
            shown.advance(result.id)
            on_result(result, len(results), len(jobs))

        execute(todo, executor=executor, workers=workers, address=address, check_only=check_only, on_result=progress)
    cache.save()
    order = list(by_id)
    results.sort(key=lambda r: order.index(r.id))
    if base is not None:
        check_regressions(results, base, regression_threshold)
    return results, {"config": meta["config"], "output_dir": meta["output_dir"], "executor": executor, "jobs": workers}
