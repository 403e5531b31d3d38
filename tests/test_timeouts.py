"""Stage time limits (--stage-timeout, gate key stage_timeout): a converter stage that runs past
its limit ends the conversion with one line and exit 6, and nothing is written; a stage stuck in
native code that never sees the signal is ended by the watchdog; long steps say they are still
running. The slow converter here is real torch.export tracing a model that takes its time."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import invoke

# The first call is the reference run; the calls after it are torch.export tracing the module.
SLOW = textwrap.dedent("""
    import ctypes, signal, time, torch
    CALLS = []
    class Slow(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            self.lin, self.block = torch.nn.Linear(4, 4), block
        def forward(self, x):
            CALLS.append(1)
            if len(CALLS) > 1:
                if self.block:  # stuck in native code, deaf to the alarm: only the watchdog can end it
                    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
                    ctypes.CDLL(None).sleep(120)
                time.sleep(120)
            return self.lin(x)
    def slow():
        return Slow(False)
    def deaf():
        return Slow(True)
""")


@pytest.fixture
def slow_factory(tmp_path):
    path = tmp_path / "slow.py"
    path.write_text(SLOW)
    return str(path)


def _cli(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "fwconv.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".fwconv-") or p.suffix in (".onnx", ".json"))


@pytest.mark.slow
def test_a_stage_past_its_limit_ends_the_conversion_with_exit_6(slow_factory, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    start = time.monotonic()
    r = _cli("torch2onnx", f"{slow_factory}:slow", "--input-shape", "1,4", "-o", out / "m.onnx", "--stage-timeout", "3")
    assert r.returncode == 6, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "export:dynamo was still running after its 3 s limit" in lines[0], lines
    assert time.monotonic() - start < 100  # not the 120 s the export would have taken
    assert _leftovers(out) == []


@pytest.mark.slow
def test_a_stage_deaf_to_the_signal_is_ended_by_the_watchdog(slow_factory, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = _cli("torch2onnx", f"{slow_factory}:deaf", "--input-shape", "1,4", "-o", out / "m.onnx", "--stage-timeout", "12",
             env={"FWCONV_STAGE_GRACE_S": "2"})
    assert r.returncode == 6, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not return within 2 s more" in lines[0], lines
    assert _leftovers(out) == []


@pytest.mark.slow
def test_gate_job_past_its_stage_limit_is_a_stage_timeout(slow_factory, tmp_path):
    (tmp_path / "g.toml").write_text(textwrap.dedent(f"""
        [gate]
        output_dir = "art"
        [[model]]
        name = "slow"
        source = "{slow_factory}:slow"
        input_shape = ["1,4"]
        targets = ["onnx"]
        stage_timeout = 3
        """))
    r = invoke("gate", tmp_path / "g.toml", "--json", tmp_path / "g.json")
    import json

    (result,) = json.loads((tmp_path / "g.json").read_text())["results"]
    assert result["status"] == "stage_timeout" and result["exit_code"] == 6, result
    assert r.exit_code == 6, r.output
    assert not (tmp_path / "art" / "slow" / "slow.onnx").exists()


def test_a_long_step_says_it_is_still_running(monkeypatch):
    from fwconv import progress

    stream = io.StringIO()
    progress.configure(True, stream=stream)
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.05)
    try:
        with progress.step("convert:onnx2tf"):
            with progress.step("inner"):
                time.sleep(0.3)
    finally:
        progress.configure(False)
    lines = stream.getvalue().splitlines()
    still = [line for line in lines if "still running" in line]
    assert still and all("convert:onnx2tf: inner ... still running" in line for line in still), lines


def test_limits_nest_and_the_earliest_fires():
    from fwconv import timeouts
    from fwconv.errors import StageTimeout

    with pytest.raises(StageTimeout) as caught:
        with timeouts.limited("outer", 5):
            with timeouts.limited("inner", 0.2):
                time.sleep(2)
    assert caught.value.stage == "inner" and caught.value.exit_code == 6
    with timeouts.limited("quick", 1):  # a stage within its limit is left alone
        time.sleep(0.01)
    time.sleep(1.1)  # and no alarm is left armed after it


def test_a_converter_that_swallows_the_timeout_is_still_stopped():
    from fwconv import timeouts
    from fwconv.errors import StageTimeout

    with pytest.raises(StageTimeout):
        with timeouts.limited("swallowed", 0.1):
            try:
                time.sleep(1)
            except BaseException:  # a converter's catch-all
                pass
