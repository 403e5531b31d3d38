"""Run gate jobs apart from the gate (a crash or hang is that job's error, never the gate's):
locally in N warm worker processes that run many jobs each (fwconv/gate/pool.py), or as Ray tasks
on a cluster, each in its own `python -m fwconv.gate.worker` process."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable, Iterator

from fwconv.gate.result import JobResult


_RUNNING: set[subprocess.Popen] = set()
_POOLS: set = set()  # warm pools in use (fwconv.gate.pool.WarmPool)


def stop_workers() -> None:
    """Terminate every running worker (on SIGINT/SIGTERM): each removes its own staging dirs."""
    for warm in list(_POOLS):
        warm.close(kill=True)
    for proc in list(_RUNNING):
        proc.terminate()
    for proc in list(_RUNNING):
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_isolated(job: dict[str, Any], check_only: bool = False) -> JobResult:
    with tempfile.TemporaryDirectory(prefix="fwconv-gate-") as tmp:
        job_file, result_file = os.path.join(tmp, "job.json"), os.path.join(tmp, "result.json")
        with open(job_file, "w") as f:
            json.dump({"job": job, "check_only": check_only}, f)
        # the gate's parent shows progress; a worker's lines would only land in its captured stderr
        proc = subprocess.Popen([sys.executable, "-m", "fwconv.gate.worker", job_file, result_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "FWCONV_PROGRESS": "0"})
        _RUNNING.add(proc)
        try:
            _, stderr = proc.communicate(timeout=job["timeout"])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return JobResult.error(job, f"timed out after {job['timeout']:g}s", seconds=job["timeout"])
        finally:
            _RUNNING.discard(proc)
        if proc.returncode != 0 or not os.path.exists(result_file):
            tail = (stderr or "").strip().splitlines()[-1:] or ["no output"]
            return JobResult.error(job, f"worker crashed (exit code {proc.returncode}): {tail[0][:300]}")
        with open(result_file) as f:
            return JobResult.from_dict(json.load(f))


def run_local(jobs: list[dict], *, workers: int, check_only: bool) -> Iterator[JobResult]:
    """Yield results as they finish; `workers` processes at a time. On an interrupt, pending
    jobs are cancelled and running workers terminated before the interrupt goes on."""
    from fwconv.gate.pool import WarmPool, thread_share

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers))
    warm = WarmPool(thread_share(workers))
    _POOLS.add(warm)
    try:
        run = warm.run if os.environ.get("FWCONV_GATE_WARM", "1") != "0" else run_isolated  # 0: a cold process per job
        futures = [pool.submit(run, job, check_only) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            if os.path.exists(result.artifact):
                from fwconv.signals import note_published

                note_published(result.artifact)  # a finished job's artifact stays, interrupt or not
            yield result
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_workers()
        raise
    finally:
        pool.shutdown(wait=True)
        warm.close()
        _POOLS.discard(warm)


def run_ray(jobs: list[dict], *, address: str | None, check_only: bool) -> Iterator[JobResult]:
    """The same isolated job, as Ray tasks (`ray.init(address=...)`; a local instance without one)."""
    from fwconv.errors import require

    ray = require("ray", "ray")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_isolated)
        pending = [remote.remote(job, check_only) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()


def execute(jobs: list[dict], *, executor: str, workers: int, address: str | None, check_only: bool,
            on_result: Callable[[JobResult], None]) -> None:
    """Run the jobs; each result goes to `on_result` as it finishes (in completion order)."""
    if not jobs:
        return
    run = run_ray(jobs, address=address, check_only=check_only) if executor == "ray" else \
        run_local(jobs, workers=workers, check_only=check_only)
    try:
        for result in run:
            on_result(result)
    except BaseException:  # an interrupt: no worker outlives the gate
        run.close()
        stop_workers()
        raise
