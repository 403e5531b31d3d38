"""The `fwconv` command line, one module per command group: convert (conversions), compare
(validate, debug), gate (gate, golden), inspect. Thin over the Python API; every option is
generated from fwconv.options, and no framework is imported at start-up.
Exit codes: fwconv.errors.EXIT_CODES."""

from __future__ import annotations

from fwconv.cli import compare, convert, gate, inspect  # noqa: F401  (each registers its commands)
from fwconv.cli.base import main


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


__all__ = ["main", "entry"]
