"""A time limit on each conversion stage, so a slow converter and a hung one can be told apart.

Inside a stage, SIGALRM raises StageTimeout (a BaseException, like an interrupt) once the stage's limit is past: the exception
unwinds through the ordinary `finally` blocks (staging and scratch directories removed, nothing
published) and the CLI prints one line and exits 6. Python delivers the signal between
bytecodes, so a converter stuck inside one long native call (a C++ pass that never returns) does
not see it: for that case a watchdog thread, armed only in command-line processes (HARD_STOP),
waits GRACE_S more, then removes the conversion's staging and scratch directories itself, prints
the same line and ends the process with the same code.

Limits nest (a validation inside a quantization search): the earliest deadline fires. Off the
main thread (a library caller's worker thread) signals cannot be used and no limit applies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator

from fwconv.errors import StageTimeout

GRACE_S = 30.0  # FWCONV_STAGE_GRACE_S overrides it (tests)
HARD_STOP = {"on": False, "stderr": None}  # enable_hard_stop(): the CLI's processes may end themselves
_deadlines: list[tuple[float, str, float]] = []  # (monotonic deadline, stage, limit seconds)
_fired: list[tuple] = []  # deadlines whose StageTimeout was raised (a converter may swallow it)


def _arm() -> None:
    if _deadlines:
        left = max(min(d for d, _, _ in _deadlines) - time.monotonic(), 1e-3)
        signal.setitimer(signal.ITIMER_REAL, left)
    else:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _expired(_signum, _frame) -> None:
    now = time.monotonic()
    late = [(d, stage, limit) for d, stage, limit in _deadlines if d <= now]
    if not late:
        _arm()  # woken early (a nested limit ended): wait for the next deadline
        return
    entry = min(late)
    _fired.append(entry)
    raise StageTimeout(entry[1], entry[2])


def enable_hard_stop() -> None:
    """Let this process end itself when a stage never returns (the CLI does this). The message
    goes to a duplicate of stderr taken now: while converters run, fd 2 points at a capture file."""
    if HARD_STOP["stderr"] is None:
        try:
            HARD_STOP["stderr"] = os.dup(2)
        except OSError:
            return
    HARD_STOP["on"] = True


@contextlib.contextmanager
def limited(stage: str, seconds: float | None) -> Iterator[None]:
    """Run the block under a limit of `seconds` (None: no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    entry = (time.monotonic() + seconds, stage, seconds)
    outermost = not _deadlines
    previous = signal.signal(signal.SIGALRM, _expired) if outermost else None
    _deadlines.append(entry)
    watchdog = _watchdog(stage, seconds, entry) if HARD_STOP["on"] else None
    _arm()
    try:
        yield
        if entry in _fired:  # raised inside the converter, which caught it and carried on: still stopped
            raise StageTimeout(stage, seconds)
    finally:
        if entry in _fired:
            _fired.remove(entry)
        _deadlines.remove(entry)
        if watchdog is not None:
            watchdog.cancel()
        _arm()
        if outermost:
            signal.signal(signal.SIGALRM, previous)


def _watchdog(stage: str, seconds: float, entry) -> threading.Timer:
    """The last resort when the stage sits in native code past its limit and the grace period."""
    def stop() -> None:
        if entry not in _deadlines:
            return
        from fwconv.staging import remove_live_dirs

        remove_live_dirs()
        error = StageTimeout(stage, seconds)
        line = (f"fwconv: error: {error.one_line()}; it did not return within {grace:g} s more, so the process "
                "was ended\n")
        os.write(HARD_STOP["stderr"], line.encode(errors="replace"))
        os._exit(error.exit_code)

    grace = float(os.environ.get("FWCONV_STAGE_GRACE_S", GRACE_S))
    timer = threading.Timer(seconds + grace, stop)
    timer.daemon = True
    timer.start()
    return timer
