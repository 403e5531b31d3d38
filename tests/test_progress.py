"""Progress display: plain lines (CI=true or --progress), none by default off a terminal, a live
rich display on a terminal. Conversions are real; the live display is rendered onto a fake
terminal (a rich Console forced to be one, writing into a StringIO)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, invoke
from fwconv import progress

CNN = os.path.join(REPO, "fixtures", "example_cnn.pt")
STEP_END = re.compile(r"^\[fwconv\] (.+) \.\.\. (ok|failed|interrupted) \d+\.\d s$")


@pytest.fixture
def auto_mode(monkeypatch):
    """Progress as a user's shell would decide it: no FWCONV_PROGRESS, no CI (conftest sets the
    first to 0 for every other test); the mode is reset after the test."""
    monkeypatch.delenv("FWCONV_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    yield monkeypatch
    progress.configure(False)


def to_onnx(tmp_path, *options, extra=()):
    return invoke(*options, "torch2onnx", CNN, "--input-shape", "1,3,32,32", "-o", tmp_path / "m.onnx",
                  "--no-latency", *extra)


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[fwconv] ")]


STEPS = {"ts2ep": "ok", "export:dynamo": "ok", "validate": "ok"}


def ended_steps(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in map(STEP_END.match, progress_lines(text)) if m}


@pytest.mark.slow
def test_progress_option_prints_a_start_and_an_end_line_per_stage(auto_mode, tmp_path):
    r = to_onnx(tmp_path, "--progress")
    assert r.exit_code == 0, r.output
    lines = progress_lines(r.stderr)
    # a TorchScript source: TS2EP first, then the ExportedProgram's export (issue 25)
    assert lines[0] == "[fwconv] ts2ep ..." and lines[2] == "[fwconv] export:dynamo ...", r.stderr
    assert lines[4] == "[fwconv] validate ...", r.stderr
    assert ended_steps(r.stderr) == STEPS, r.stderr
    assert len(lines) == 6 and r.stderr.splitlines() == lines  # nothing else on stderr
    assert r.stdout.startswith("wrote ") and not progress_lines(r.stdout)  # stdout: results only


@pytest.mark.slow
def test_ci_gets_plain_lines_and_no_progress_wins(auto_mode, tmp_path):
    auto_mode.setenv("CI", "true")
    r = to_onnx(tmp_path)
    assert r.exit_code == 0, r.output
    assert ended_steps(r.stderr) == STEPS, r.stderr
    r = to_onnx(tmp_path, "--no-progress", extra=["--force"])
    assert r.exit_code == 0, r.output
    assert r.stderr == ""


@pytest.mark.slow
def test_off_a_terminal_a_failing_command_prints_one_stderr_line(auto_mode, tmp_path):
    """Parity fails after every stage ran (atol 0 on an fp32 round trip): one line by default;
    with progress on, the same single error line comes last, after the stages' lines."""
    strict = ["--atol", "0", "--rtol", "0"]
    r = to_onnx(tmp_path, extra=strict)
    assert r.exit_code == 3, r.output
    assert [line for line in r.stderr.splitlines() if line.strip()] == [r.stderr.strip()]
    assert r.stderr.startswith("fwconv: error:")
    r = to_onnx(tmp_path, "--progress", extra=strict)
    assert r.exit_code == 3, r.output
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("fwconv: error:") and lines[:-1] == progress_lines(r.stderr)
    assert STEPS.items() <= ended_steps(r.stderr).items()  # then the repairs' and debugger's steps


def test_env_decides_when_no_option_does(auto_mode):
    stream = io.StringIO()  # not a terminal
    assert progress.decide(None, stream) == "off"
    auto_mode.setenv("FWCONV_PROGRESS", "1")
    assert progress.decide(None, stream) == "plain"
    assert progress.decide(False, stream) == "off"
    auto_mode.setenv("FWCONV_PROGRESS", "0")
    auto_mode.setenv("CI", "true")
    assert progress.decide(None, stream) == "off"
    assert progress.decide(True, stream) == "plain"


def test_a_terminal_gets_the_live_display_unless_ci_or_debug(auto_mode):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    auto_mode.setenv("TERM", "xterm")
    assert progress.decide(None, Terminal()) == "rich"
    assert progress.decide(None, Terminal(), live=False) == "plain"  # --debug: converters write there too
    auto_mode.setenv("CI", "true")
    assert progress.decide(None, Terminal()) == "plain"


def test_plain_lines_escape_the_converters_capture():
    """quiet.captured_output points fd 1 and 2 at a capture file while a converter runs; a step
    inside it (the layerwise debugger's) must still reach the real stderr."""
    code = ("import sys\nfrom fwconv import progress, quiet\nprogress.configure(True)\n"
            "with quiet.captured_output():\n    with progress.step('layerwise: reference'):\n"
            "        print('converter noise', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "converter noise" not in proc.stderr
    assert progress_lines(proc.stderr) == ["[fwconv] layerwise: reference ...",
                                           proc.stderr.splitlines()[1]]
    assert ended_steps(proc.stderr) == {"layerwise: reference": "ok"}


@pytest.fixture
def fake_terminal():
    """Live mode on a rich Console that believes it is a terminal; reset after the test."""
    from rich.console import Console

    screen = io.StringIO()
    progress.configure(console=Console(file=screen, force_terminal=True, width=100))
    yield screen
    progress.configure(False)


def test_live_display_renders_counts_steps_and_results(fake_terminal, capsys):
    with progress.counted("route", 2) as routes:
        for label in ("torch -> tflite", "torch -> onnx -> tflite"):
            with routes.step(label), progress.step("convert:x"):
                progress.echo(f"done {label}")
    screen = fake_terminal.getvalue()
    assert "\x1b[?25l" in screen and screen.rstrip("\r").endswith("\x1b[?25h")  # cursor hidden, then back
    assert "convert:x" in screen and "route 2/2 torch -> onnx -> tflite" in screen
    assert capsys.readouterr().out == "done torch -> tflite\ndone torch -> onnx -> tflite\n"
    assert progress._STATE["live"] is None and progress._STATE["labels"] == []


def test_interrupt_stops_the_live_display(fake_terminal):
    with pytest.raises(KeyboardInterrupt):
        with progress.counted("gate job", 3) as jobs, progress.step("layerwise: candidate"):
            jobs.advance("cnn:onnx")
            raise KeyboardInterrupt
    assert fake_terminal.getvalue().rstrip("\r").endswith("\x1b[?25h")
    assert progress._STATE["live"] is None and progress._STATE["labels"] == []
