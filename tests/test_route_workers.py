"""Routes in worker processes (convert/route_workers.py) and warm gate workers (fwconv/gate/pool.py):
the same verdicts as the in-process path, a crashed or hung worker is one clear error while the
rest goes on, and an interrupt leaves no worker behind. Crashes are real: the test models kill
their own process (SIGKILL) when they are loaded in the process that must crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fwconv.errors import InputError

FWCONV = [sys.executable, "-m", "fwconv.cli"]

# A CNN factory that kills the process loading it when that process is the litert route's worker.
CRASH_IN_LITERT_WORKER = textwrap.dedent("""
    import multiprocessing, os, signal, torch
    def build():
        if "litert" in multiprocessing.current_process().name:
            os.kill(os.getpid(), signal.SIGKILL)
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    """)
# Gate models: one that kills its worker, one that hangs past its timeout.
CRASH_ON_LOAD = "import os, signal\ndef build():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
HANG_ON_LOAD = "import time\ndef build():\n    time.sleep(600)\n"


def test_route_jobs_from_the_environment(monkeypatch):
    from fwconv.convert.route_workers import route_jobs

    monkeypatch.delenv("FWCONV_ROUTE_JOBS", raising=False)
    assert route_jobs(["one"]) == 0  # a single route runs in-process: nothing to overlap
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert route_jobs(["a", "b"]) == 0  # not two idle cores: in-process
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert route_jobs(["a", "b"]) == 2
    monkeypatch.setenv("FWCONV_ROUTE_JOBS", "1")
    assert route_jobs(["a", "b"]) == 1
    monkeypatch.setenv("FWCONV_ROUTE_JOBS", "0")
    assert route_jobs(["a", "b"]) == 0
    monkeypatch.setenv("FWCONV_ROUTE_JOBS", "many")
    with pytest.raises(InputError, match="FWCONV_ROUTE_JOBS"):
        route_jobs(["a", "b"])


def _convert(source: str, out, route_jobs: str, **options):
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert

    os.environ["FWCONV_ROUTE_JOBS"] = route_jobs
    try:
        return convert(str(source), "tflite", str(out), ConvertOptions(via="best", **options))
    finally:
        del os.environ["FWCONV_ROUTE_JOBS"]


@pytest.mark.slow
def test_workers_give_the_verdicts_and_artifact_of_the_in_process_path(models_dir, tmp_path):
    serial = _convert(models_dir / "cnn.pt2", tmp_path / "serial.tflite", "0")
    parallel = _convert(models_dir / "cnn.pt2", tmp_path / "parallel.tflite", "2")
    verdicts = lambda r: {t["route"]: t["status"] for t in r.manifest.extra["routes"]}
    assert verdicts(parallel) == verdicts(serial) == {"torch -> tflite (litert)": "pass", "torch -> onnx -> tflite": "pass"}
    assert parallel.manifest.extra["chosen_route"] == serial.manifest.extra["chosen_route"]
    # Not byte-identical: once seen, the ONNX route's .tflite was 24564 bytes in-process (after
    # litert-torch had been imported into the same process) and 24652 in its own worker.
    errs = lambda r: [o.metrics["max_abs_err"] for o in r.validation.outputs]
    assert errs(parallel) == pytest.approx(errs(serial), rel=0.5, abs=1e-7)


@pytest.mark.slow
def test_a_crashed_route_worker_is_a_clear_error_and_the_other_route_is_kept(tmp_path):
    factory = tmp_path / "crashy.py"
    factory.write_text(CRASH_IN_LITERT_WORKER)
    result = _convert(f"{factory}:build", tmp_path / "m.tflite", "2", input_shape=["1,3,8,8"])
    routes = {t["route"]: t for t in result.manifest.extra["routes"]}
    crashed = routes["torch -> tflite (litert)"]
    assert crashed["status"] == "error"
    assert "worker converting torch -> tflite (litert) crashed (exit code -9)" in crashed["error"]
    assert result.manifest.extra["chosen_route"] == "torch -> onnx -> tflite"
    assert result.validation.parity_passed and os.path.exists(tmp_path / "m.tflite")


@pytest.mark.slow
def test_an_interrupt_kills_the_route_workers(models_dir, tmp_path):
    import psutil

    out = tmp_path / "m.tflite"
    proc = subprocess.Popen(FWCONV + ["torch2tflite", str(models_dir / "cnn.pt2"), "-o", str(out), "--via", "best"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "FWCONV_ROUTE_JOBS": "2"})
    workers, deadline = [], time.time() + 60
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(_cmdline(p))]
    assert len(workers) >= 2, "the route workers did not start"
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole group, workers included
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "fwconv: error: interrupted by SIGINT; nothing was written"
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not out.exists()


def _cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except Exception:
        return []


@pytest.mark.slow
def test_warm_gate_worker_replaced_after_a_crash_and_a_timeout(models_dir, tmp_path):
    """One warm worker (--jobs 1) meets a job that kills it and one that hangs: each is that job's
    error, a fresh worker takes the next job, and the good model still passes."""
    (tmp_path / "crash.py").write_text(CRASH_ON_LOAD)
    (tmp_path / "hang.py").write_text(HANG_ON_LOAD)
    (tmp_path / "gate.toml").write_text(textwrap.dedent(f"""
        [gate]
        output_dir = "arts"
        [[model]]
        name = "crash"
        source = "crash.py:build"
        input_shape = ["1,4"]
        targets = ["onnx"]
        [[model]]
        name = "hang"
        source = "hang.py:build"
        input_shape = ["1,4"]
        targets = ["onnx"]
        timeout = 5
        [[model]]
        name = "cnn"
        source = "{models_dir / 'cnn.pt2'}"
        targets = ["onnx"]
        """))
    proc = subprocess.run(FWCONV + ["gate", str(tmp_path / "gate.toml"), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    results = {r["id"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert results["crash:onnx"]["status"] == "error"
    assert "worker crashed (exit code -9)" in results["crash:onnx"]["messages"][0]
    assert results["hang:onnx"]["status"] == "error"
    assert results["hang:onnx"]["messages"] == ["timed out after 5s"]
    assert results["cnn:onnx"]["status"] == "pass", proc.stderr
    assert proc.returncode == 1


def test_gate_workers_split_the_cores_between_them(monkeypatch):
    """Two warm workers on 2 cores get one compute thread each (torch's OpenMP pool included, set
    before torch is imported), and their runtimes' default; one worker keeps the defaults."""
    from fwconv.gate.pool import thread_share

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert thread_share(1) is None and thread_share(2) == 1 and thread_share(8) == 1
    code = ("from fwconv.procs import limit_threads, worker_threads; limit_threads(1); import torch; "
            "from fwconv.gate.config import gate_settings; "
            "print(torch.get_num_threads(), worker_threads(), gate_settings({}, 'fp32').threads)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FWCONV_THREADS")})
    assert out.stdout.split() == ["1", "1", "1"], out.stderr[-2000:]
