"""SIGINT and SIGTERM end a run cleanly: exit 130 / 143, one line, nothing half-written.

The handler raises `Interrupted` (a BaseException, so a converter's `except Exception` cannot
swallow it) and records the signal. Cleanup is the ordinary `finally` blocks: staging and
scratch directories are removed, isolated runners and gate workers are stopped. A converter
that catches everything and carries on is still stopped: the staged outputs are only published
after `raise_if_interrupted()`, and the CLI exits with the signal's code whatever happened after.
"""

from __future__ import annotations

import signal
import threading

_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_received: list[int] = []
_published: list[str] = []  # outputs already in place when the signal came: the message says so


class Interrupted(BaseException):
    """The run was interrupted by a signal; carries its exit code."""

    def __init__(self, signum: int):
        self.signal_name = signal.Signals(signum).name
        self.exit_code = _EXIT_CODES.get(signum, 128 + signum)
        done = f"; already written: {', '.join(_published[:3])}{' ...' if len(_published) > 3 else ''}" \
            if _published else "; nothing was written"
        super().__init__(f"interrupted by {self.signal_name}{done}")

    def one_line(self) -> str:
        return str(self)


def _handler(signum, _frame) -> None:
    first = not _received
    _received.append(signum)
    if first:
        raise Interrupted(signum)


def note_published(path: str) -> None:
    """An output is complete and in place (a later interrupt does not undo it)."""
    _published.append(path)


def install() -> None:
    """Route SIGINT/SIGTERM to `Interrupted` (main thread only; elsewhere it is a no-op)."""
    if threading.current_thread() is threading.main_thread():
        for signum in _EXIT_CODES:
            signal.signal(signum, _handler)


def received() -> Interrupted | None:
    return Interrupted(_received[0]) if _received else None


def raise_if_interrupted() -> None:
    if _received:
        raise Interrupted(_received[0])
