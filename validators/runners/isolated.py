"""Run any runner in its own process, so a crash or hang in one runtime is a clear error.

The proxy speaks to a spawned worker over a pipe: each call (activate, input_specs, infer,
latency, memory) is one message with a timeout. A dead worker becomes RunnerError naming the
runtime and its exit code; a hung one is killed after the timeout. The worker's peak RSS is
the runner's own peak memory.
"""

from __future__ import annotations

import resource
from typing import Any

from fwconv.errors import RunnerError
from fwconv.procs import decode_error, encode_error, ignore_sigint, spawn, stop
from fwconv.validators.runners.base import Runner


def _serve(conn, kwargs: dict[str, Any]) -> None:
    from fwconv.validators.runners import make_runner

    ignore_sigint()  # the parent answers Ctrl-C by stopping this worker (fwconv/procs.py)

    runner = None
    while True:
        try:
            method, args = conn.recv()
        except EOFError:
            return
        try:
            if method == "activate":
                runner = make_runner(**kwargs).activate()
                result = runner.load_seconds
            elif method == "close":
                if runner is not None:
                    runner.deactivate()
                conn.send(("ok", None))
                return
            elif method == "memory_mb":
                result = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            else:
                result = getattr(runner, method)(*args)
                if method == "infer":
                    result = (result, runner.last_inference_seconds)
            conn.send(("ok", result))
        except Exception as exc:  # report, keep serving: the parent decides
            conn.send(("error", encode_error(exc)))


class IsolatedRunner(Runner):
    def __init__(self, *, timeout: float = 600.0, **runner_kwargs: Any):
        super().__init__()
        self.kwargs = runner_kwargs
        self.timeout = timeout
        self.device = runner_kwargs.get("device", "cpu")
        self.name = f"isolated:{runner_kwargs.get('fmt') or 'model'}"
        self._proc = None
        self._conn = None

    def _crashed(self, method: str) -> RunnerError:
        self._proc.join(5)
        return RunnerError(f"the {self.label} runner crashed during '{method}' (exit code {self._proc.exitcode})")

    def _call(self, method: str, *args: Any) -> Any:
        try:
            self._conn.send((method, args))
        except (BrokenPipeError, ConnectionError, OSError) as exc:
            raise self._crashed(method) from exc
        if not self._conn.poll(self.timeout):
            stop(self._proc)
            raise RunnerError(f"the {self.label} runner did not answer '{method}' within {self.timeout:g}s; it was killed")
        try:
            status, payload = self._conn.recv()
        except (EOFError, ConnectionError) as exc:
            raise self._crashed(method) from exc
        if status == "error":
            raise decode_error(payload)
        return payload

    @property
    def label(self) -> str:
        return str(self.kwargs.get("model"))

    def _activate(self) -> None:
        self._proc, self._conn = spawn(_serve, self.kwargs)
        self._call("activate")

    def _deactivate(self) -> None:
        from fwconv.signals import received

        if self._proc is None or not self._proc.is_alive():
            return
        if received():  # interrupted: the worker may be mid-call, so it is stopped, not asked
            stop(self._proc)
            return
        try:
            self._call("close")
        except RunnerError:
            pass
        finally:
            if self._proc is not None:
                self._proc.join(5)
                if self._proc.is_alive():
                    self._proc.kill()

    def input_specs(self):
        return self._call("input_specs")

    def input_names(self):
        return self._call("input_names")

    def output_names(self):
        return self._call("output_names")

    def returns_dict(self):
        return self._call("returns_dict")

    def index_bounds(self):
        return self._call("index_bounds")

    def infer(self, feed):
        out, seconds = self._call("infer", feed)
        self.last_inference_seconds = seconds
        return out

    def measure_latency(self, feed, settings):
        return self._call("measure_latency", feed, settings)

    def memory_mb(self) -> tuple[float | None, str]:
        return self._call("memory_mb"), "peak RSS of the runner's process"
