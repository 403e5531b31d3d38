"""Process plumbing shared by isolated runners, route workers and warm gate workers.

Workers are spawned (never forked: a forked TensorFlow or torch is not safe) with SIGINT ignored,
because Ctrl-C reaches the whole process group and the parent is the one that answers it by
killing its workers. Errors cross the pipe as (type name, one line, exit code) and are rebuilt
with their type on the parent's side, so an unsupported op is still exit 5 there.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from typing import Any, Callable

from fwconv.errors import FwconvError, rebuild


@contextlib.contextmanager
def sigint_ignored():
    """SIGINT ignored while a worker process starts (main thread only; a no-op elsewhere)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


THREADS_ENV = "FWCONV_THREADS"  # a worker's share of the cores: the default `threads` of its runners


def limit_threads(threads: int | None) -> None:
    """In a worker, before any framework is imported: at most `threads` compute threads in torch
    (OpenMP), BLAS and TensorFlow, and as the validator's default for its runtimes. Why: two gate
    workers on 2 cores, each with a pool as wide as the machine, spin against each other (measured:
    `--jobs 2` took 1.3x the wall time of `--jobs 1`)."""
    import os

    if not threads:
        return
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                 THREADS_ENV):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"


def worker_threads() -> int | None:
    """The thread share limit_threads gave this process, if any."""
    import os

    raw = os.environ.get(THREADS_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def ignore_sigint() -> None:
    """In a worker: keep Ctrl-C ignored even if a library resets the handler (the parent stops us)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def quiet_worker(debug: bool = False) -> None:
    """In a spawned helper that runs a native runtime (LiteRT-LM logs ~40 lines through glog): Ctrl-C
    ignored (the parent answers it) and its stdout/stderr discarded unless --debug, so the user's
    terminal keeps fwconv's one line. What it has to say comes back over the pipe."""
    import os

    ignore_sigint()
    if debug:
        return
    sink = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(sink, fd)
    os.close(sink)


def spawn(target: Callable, *args: Any, daemon: bool = True, name: str | None = None):
    """Start `target(child_conn, *args)` in a spawned process; returns (process, parent_conn)."""
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_as_imported(target), args=(child, *args), daemon=daemon, name=name)
    with sigint_ignored():  # the worker is born ignoring Ctrl-C (Python keeps an inherited SIG_IGN)
        proc.start()
    child.close()
    return proc, conn


def _as_imported(target: Callable) -> Callable:
    """`target` as its module is imported now. A spawned process gets its target pickled by name,
    and pickle refuses a function that is not the one sys.modules holds under that name, which
    happens after something restored sys.modules (pytester's in-process runs do) while a package
    kept the old submodule as an attribute."""
    import importlib

    return getattr(importlib.import_module(target.__module__), target.__qualname__, target)


def encode_error(exc: BaseException) -> tuple[str, str, int]:
    """An exception as it crosses the pipe: fwconv's own keep their type; anything else is a
    RunnerError-like line naming the Python type."""
    if isinstance(exc, FwconvError):
        return type(exc).__name__, exc.one_line(), exc.exit_code
    return "RunnerError", f"{type(exc).__name__}: {exc}".splitlines()[0], 1


def decode_error(payload) -> FwconvError:
    return rebuild(*payload)


def stop(proc, grace: float = 5.0) -> None:
    """Kill a worker and reap it (SIGKILL: it may be mid-call in C code that ignores SIGTERM)."""
    if proc is not None and proc.is_alive():
        proc.kill()
    if proc is not None:
        proc.join(grace)


def exit_fast(code: int | None = 0) -> None:
    """Leave without Python's finalization: a process that imported torch, litert-torch or
    TensorFlow spends 1.4-1.8 s tearing them down (no atexit handler takes over 20 ms). Streams and
    logs are flushed and the atexit handlers run first; where something could still need an orderly
    exit (another non-daemon thread, a live child process) the exit is a normal one. For callers
    whose outputs are all published or removed by now (the CLI, a gate worker whose pipe closed)."""
    import atexit
    import logging
    import os
    import sys
    import threading

    if not isinstance(code, int) and code is not None:  # sys.exit("message"): Python prints it
        sys.exit(code)
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if busy or mp.active_children():
        sys.exit(code)
    logging.shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`fwconv ... | head`): nothing more to say
            pass
    os._exit(code or 0)
