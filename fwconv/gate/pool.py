"""Warm gate workers: long-lived processes that run many jobs each, so torch, TensorFlow and the
converters are imported once per worker instead of once per job (5-8 s each, cold).

Isolation is kept where it matters: a job still runs in a process apart from the gate, a worker
that dies mid-job makes that job an error and is replaced, and a job past its timeout has its
worker killed (and replaced). A worker is also retired after MAX_JOBS jobs, so memory a framework
keeps between conversions cannot pile up without bound. Inside a worker, conversions run their
routes in-process (FWCONV_ROUTE_JOBS=0): the gate already runs jobs side by side, and a route
worker would pay the cold imports again.
"""

from __future__ import annotations

import os
import threading

from fwconv import procs
from fwconv.gate.result import JobResult

MAX_JOBS = 25


def _serve(conn, threads: int | None) -> None:
    """Worker loop: (job, check_only) in, JobResult out, until the pipe closes."""
    os.environ["FWCONV_PROGRESS"] = "0"  # the gate's parent shows progress
    os.environ["FWCONV_ROUTE_JOBS"] = "0"
    procs.limit_threads(threads)
    from fwconv import signals
    from fwconv.gate.worker import run_job

    signals.install()  # SIGTERM from the gate: the job's staging and scratch dirs are removed on the way out
    procs.ignore_sigint()
    try:
        while True:
            try:
                job, check_only = conn.recv()
            except EOFError:  # the gate is done with this worker: every job's outputs are settled
                procs.exit_fast(0)
            conn.send(run_job(job, check_only=check_only))
    except signals.Interrupted:  # stopped by the gate: the finally blocks have cleaned up; no traceback
        return


def thread_share(workers: int) -> int | None:
    """Compute threads per worker when several run at once: the cores split evenly (None: one
    worker keeps the frameworks' defaults, i.e. every core)."""
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


class WarmWorker:
    def __init__(self, threads: int | None = None):
        # not daemonic: its runners spawn processes
        self.proc, self.conn = procs.spawn(_serve, threads, daemon=False)
        self.jobs = 0

    def run(self, job: dict, check_only: bool) -> JobResult:
        """The job's result; a crash or a timeout becomes an error result (and this worker is dead)."""
        self.jobs += 1
        try:
            self.conn.send((job, check_only))
            if not self.conn.poll(job["timeout"]):
                self.close(kill=True)
                return JobResult.error(job, f"timed out after {job['timeout']:g}s", seconds=job["timeout"])
            return self.conn.recv()
        except (EOFError, ConnectionError, OSError):
            self.close(kill=True)
            return JobResult.error(job, f"worker crashed (exit code {self.proc.exitcode})")

    @property
    def usable(self) -> bool:
        return self.proc.is_alive() and self.jobs < MAX_JOBS

    def close(self, kill: bool = False, grace: float = 10.0) -> None:
        """Ask it to finish (pipe closed), or SIGTERM it so its job cleans up; SIGKILL if it lingers."""
        if kill and self.proc.is_alive():
            self.proc.terminate()
        self.conn.close()
        self.proc.join(grace)
        procs.stop(self.proc)


class WarmPool:
    """One warm worker per calling thread (the gate's thread pool), replaced when it is unusable."""

    def __init__(self, threads: int | None = None):
        self.threads = threads  # each worker's compute threads (thread_share)
        self._local = threading.local()
        self._all: list[WarmWorker] = []
        self._lock = threading.Lock()

    def run(self, job: dict, check_only: bool) -> JobResult:
        worker = getattr(self._local, "worker", None)
        if worker is None or not worker.usable:
            if worker is not None:
                worker.close()
            worker = self._local.worker = WarmWorker(self.threads)
            with self._lock:
                self._all.append(worker)
        return worker.run(job, check_only)

    def close(self, kill: bool = False) -> None:
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.close(kill=kill)
