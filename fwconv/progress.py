"""Progress for long steps: a live `rich` display on a terminal, short plain lines in CI logs.

Stages, routes, gate jobs and the layerwise debugger all report through `step()` and
`counted()`, so one switch decides for all of them: `--progress/--no-progress`, then
FWCONV_PROGRESS=0/1, then auto: a live display when stderr is a terminal (and CI is not true),
plain lines when CI=true, nothing otherwise. "Nothing otherwise" keeps piped and scripted runs
exactly as before: a failing command prints one stderr line, stdout carries only results.

Progress goes to stderr, through a duplicate of its file descriptor taken when the mode is set:
quiet.captured_output later points descriptors 1 and 2 at a capture file while converters run,
and progress must still reach the user. rich is imported only in live mode; without it the
terminal gets plain lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import IO, Any, Iterator

ENV = "FWCONV_PROGRESS"
PREFIX = "[fwconv]"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

# mode: "off" | "plain" | "rich" (None until configured); stream: where lines go; owned: a
# descriptor duplicate we opened (closed on reconfigure); live: the rich display while a step runs.
_STATE: dict[str, Any] = {"mode": None, "stream": None, "owned": None, "console": None, "live": None,
                          "labels": []}


def _env_flag() -> bool | None:
    value = os.environ.get(ENV, "").strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def decide(flag: bool | None, stream: IO[str], live: bool = True) -> str:
    """The mode: the flag wins, then FWCONV_PROGRESS, then CI=true (plain) or a terminal (live,
    unless `live` is False)."""
    flag = _env_flag() if flag is None else flag
    ci = os.environ.get("CI", "").strip().lower() in _TRUE
    terminal = _is_terminal(stream)
    if flag is False or (flag is None and not (terminal or ci)):
        return "off"
    if terminal and live and not ci:
        try:
            import rich.progress  # noqa: F401  (the extra is optional: plain lines without it)

            return "rich"
        except ImportError:
            pass
    return "plain"


def _private_copy(stream: IO[str]) -> IO[str]:
    """The same file on a descriptor of our own, so captured_output's dup2 over fd 2 cannot
    swallow progress. A stream without a descriptor (Click's CliRunner, StringIO) is kept as is:
    the capture swaps sys.stderr, not this object."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return stream
    stream.flush()
    copy = os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8",
                     errors="replace")
    _STATE["owned"] = copy
    return copy


def configure(enabled: bool | None = None, *, stream: IO[str] | None = None, live: bool = True,
              console: Any = None) -> str:
    """Set the mode for this process (the CLI does it once per command). live=False keeps a
    terminal to plain lines (--debug lets converters write there, which would tear a live
    display). `console`, a rich Console, forces live mode onto it (tests use a fake terminal)."""
    if _STATE["owned"] is not None:
        _STATE["owned"].close()
        _STATE["owned"] = None
    stream = stream or sys.stderr
    mode = "rich" if console is not None else decide(enabled, stream, live)
    if mode == "rich" and console is None:
        from rich.console import Console

        console = Console(file=_private_copy(stream))
    _STATE.update(mode=mode, console=console, live=None, labels=[],
                  stream=_private_copy(stream) if mode == "plain" else stream)
    return mode


def _mode() -> str:
    """Library use without the CLI: quiet unless FWCONV_PROGRESS asks for progress."""
    if _STATE["mode"] is None:
        configure(_env_flag() or False)
    return _STATE["mode"]


def _plain(text: str) -> None:
    stream = _STATE["stream"]
    stream.write(f"{PREFIX} {text}\n")
    stream.flush()


def _outcome(exc: BaseException | None) -> str:
    return "ok" if exc is None else "failed" if isinstance(exc, Exception) else "interrupted"


# -- live display ---------------------------------------------------------------------------

def _new_live():
    """A rich Progress: spinner, step name, bar (counts only), k/n, elapsed. Transient, and it
    leaves sys.stdout alone so results and captured converter output go where they always went."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class CountBar(BarColumn):
        def render(self, task):
            return super().render(task) if task.total is not None else Text("")

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), CountBar(bar_width=24),
                    TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=_STATE["console"],
                    transient=True, redirect_stdout=False, redirect_stderr=False)


@contextlib.contextmanager
def _live_task(description: str, total: int | None = None, visible: bool = True) -> Iterator[Any]:
    """A row on the live display while the block runs; the outermost one starts the display and
    stops it in `finally`, so Ctrl-C and errors leave the terminal clean (cursor back, rows gone)."""
    outermost = _STATE["live"] is None
    if outermost:
        _STATE["live"] = _new_live()
        _STATE["live"].start()
    live = _STATE["live"]
    indent = "  " * len(_STATE["labels"])
    task = live.add_task(indent + description, total=total, visible=visible,
                         count=f"0/{total}" if total is not None else "")
    try:
        yield live, task
    finally:
        live.remove_task(task)
        if outermost:
            _STATE["live"] = None
            live.stop()


# -- the API --------------------------------------------------------------------------------

@contextlib.contextmanager
def step(label: str) -> Iterator[None]:
    """Show a long step while it runs. Nested steps read `outer: inner` in plain lines, e.g.
    `[fwconv] route 1/2 torch -> onnx -> tflite: convert:onnx2tf ... ok 3.2 s`."""
    mode = _mode()
    if mode == "off":
        yield
        return
    labels = _STATE["labels"]
    name = ": ".join(labels + [label])
    start, error = time.perf_counter(), None
    if mode == "plain":
        _plain(f"{name} ...")
    try:
        with (_live_task(label) if mode == "rich" else _heartbeat(name, start)):
            labels.append(label)
            try:
                yield
            finally:
                labels.pop()
    except BaseException as exc:
        error = exc
        raise
    finally:
        if mode == "plain":
            _plain(f"{name} ... {_outcome(error)} {time.perf_counter() - start:.1f} s")


HEARTBEAT_S = 60.0  # plain mode: a step running this long says so again, with its elapsed time


@contextlib.contextmanager
def _heartbeat(name: str, start: float) -> Iterator[None]:
    """Plain lines for a long step: `NAME ... still running, 120 s` every HEARTBEAT_S, from the
    innermost running step only, so a CI log tells a slow converter from a hung one (the live
    display shows elapsed time on every row)."""
    import threading

    done = threading.Event()
    stack = _STATE.setdefault("beating", [])
    stack.append(done)

    def beat() -> None:
        while not done.wait(HEARTBEAT_S):
            if stack and stack[-1] is done:
                _plain(f"{name} ... still running, {time.perf_counter() - start:.0f} s")

    thread = threading.Thread(target=beat, name="fwconv-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        stack.remove(done)


class Counter:
    """k of n parts of a long job (routes, gate jobs). A count of one says nothing, so it shows
    nothing: no bar, and its part is no extra level in step names."""

    def __init__(self, noun: str, total: int, live: Any = None, task: Any = None):
        self.noun, self.total, self.done = noun, total, 0
        self._live, self._task = live, task

    def advance(self, label: str = "") -> None:
        """A part finished. Plain mode prints nothing here: the caller reports finished parts
        itself (the gate's result lines); parts run under `step()` have their own lines."""
        self.done += 1
        if self._live is not None:
            last = f" (last: {label})" if label else ""
            self._live.update(self._task, completed=self.done, count=f"{self.done}/{self.total}",
                              description=f"{self.noun}s{last}")

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        """Run part k+1 as a step named `NOUN k/n LABEL`; it counts as done even if it fails."""
        if self.total <= 1:
            yield
            return
        try:
            with step(f"{self.noun} {self.done + 1}/{self.total} {label}"):
                yield
        finally:
            self.advance(label)


@contextlib.contextmanager
def counted(noun: str, total: int) -> Iterator[Counter]:
    """A job of `total` parts: a bar with k/n and elapsed time on a terminal."""
    if _mode() != "rich":
        yield Counter(noun, total)
        return
    with _live_task(f"{noun}s", total=total, visible=total > 1) as (live, task):
        yield Counter(noun, total, live, task)


def echo(text: str) -> None:
    """A result line for stdout while a live display may be up: the display steps aside (it is
    transient, so stopping erases it), the line prints, the display comes back below it."""
    live = _STATE["live"]
    if live is not None:
        live.stop()
    print(text, flush=True)
    if live is not None:
        live.start()
