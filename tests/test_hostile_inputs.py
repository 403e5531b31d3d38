"""fwconv's safety promises, tried as an attacker would: crafted pickles in every place a PyTorch
archive is unpickled, size bombs, outputs aimed at the inputs, symlinked reports, hostile gate
configs, interrupts. Every hostile file is built here by hand (tests/hostile_files.py).

Each case asserts: the documented exit code, one `fwconv: error:` line, no canary file (nothing
ran), no input changed (hash before/after), nothing left in the output folder or TMPDIR.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

import hostile_files as H
from fwconv.cli import main

FWCONV = [sys.executable, "-m", "fwconv.cli"]
PT2_PLACES = ("sample_inputs", "weight", "constant", "opaque")
STYLES = ("reduce", "proto0", "memo")


def digest(path) -> str:
    h = hashlib.sha256()
    for root, _, files in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A work folder, a private TMPDIR, and a check that neither keeps anything fwconv made."""
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.delenv("FWCONV_MAX_SIZE", raising=False)
    yield work
    leftovers = [p.name for p in tmp.iterdir() if p.name.startswith(("fwconv", ".fwconv"))]
    leftovers += [p.name for p in work.rglob(".fwconv-*")]
    assert not leftovers, f"left behind: {leftovers}"


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    result.err_lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result


def assert_refused(result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("fwconv: error:"), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def clean_models(models_dir):
    return {"pt2": str(models_dir / "mlp.pt2"), "pt": str(models_dir / "mlp.pt"), "npz": str(models_dir / "mlp.npz")}


# -- crafted pickles: nothing runs, exit 2, the member is named ------------------------------------

def _hostile_files(clean, folder, canary):
    files = {}
    for where in PT2_PLACES:
        for style in STYLES:
            path = folder / f"{where}_{style}.pt2"
            H.pt2_with_payload(clean["pt2"], str(path), str(canary), where, style)
            files[path.name] = path
    for style in STYLES + ("load_from_bytes",):
        ts, saved = folder / f"ts_{style}.pt", folder / f"save_{style}.pt"
        H.torchscript_with_payload(clean["pt"], str(ts), str(canary), style)
        H.torch_save_with_payload(str(saved), str(canary), style)
        files[ts.name], files[saved.name] = ts, saved
    return files


def test_crafted_pickles_never_run(clean_models, sandbox):
    """Every payload place x style, through inspect, torch2onnx and validate: exit 2, nothing ran."""
    canary = sandbox / "CANARY"
    files = _hostile_files(clean_models, sandbox, canary)
    assert len(files) == 20
    before = {name: digest(p) for name, p in files.items()}
    for name, path in files.items():
        for args in (("inspect", path), ("torch2onnx", path, "--input-shape", "2,32", "-o", sandbox / "out.onnx"),
                     ("validate", path, clean_models["pt2"], "--no-latency")):
            r = invoke(*args)
            assert_refused(r, 2)
            assert "would run code" in r.stderr, (name, r.stderr)
            assert not canary.exists(), f"{name}: the payload ran ({args[0]})"
    assert {name: digest(p) for name, p in files.items()} == before
    assert sorted(p.name for p in sandbox.iterdir()) == sorted(files)  # no artifact, no manifest, no report


def test_scanner_sees_through_every_trick(clean_models, tmp_path):
    """The static scan alone: protocol 0, memo'd STACK_GLOBAL behind decoys, nested torch.save
    zips and the allowlisted-looking torch.storage._load_from_bytes are all found, by name."""
    from fwconv.models.pickle_scan import unsafe_globals

    files = _hostile_files(clean_models, tmp_path, tmp_path / "CANARY")
    for name, path in files.items():
        expected = "torch.storage._load_from_bytes" if "load_from_bytes" in name else "posix.system"
        assert expected in unsafe_globals(str(path)), name
    assert unsafe_globals(clean_models["pt"]) == [] and unsafe_globals(clean_models["pt2"]) == []


def test_loader_is_restricted_even_without_the_scan(clean_models, tmp_path, monkeypatch):
    """Second line of defence: with the scan switched off, torch.export.load still unpickles
    nothing but tensor data (torch.load forced to weights_only, pickle.loads allowlisted)."""
    import torch

    import fwconv.models.torch_source as ts
    from fwconv.errors import UnsafeModelError

    canary = tmp_path / "CANARY"
    monkeypatch.setattr(ts, "unsafe_globals", lambda path: [])
    real_load = torch.load
    for where in PT2_PLACES:
        for style in STYLES:
            path = tmp_path / f"{where}_{style}.pt2"
            H.pt2_with_payload(clean_models["pt2"], str(path), str(canary), where, style)
            with pytest.raises(UnsafeModelError):
                ts.load_torch_source(str(path))
            assert not canary.exists(), f"{where}/{style} ran"
            assert torch.load is real_load  # restored after the load
    assert ts.load_torch_source(clean_models["pt2"]).kind == "exported"


def test_crafted_pt2_through_the_installed_command(clean_models, sandbox):
    """One payload end to end in a real process (no CliRunner): exit 2, one line, nothing ran."""
    canary = sandbox / "CANARY"
    path = sandbox / "evil.pt2"
    H.pt2_with_payload(clean_models["pt2"], str(path), str(canary), "sample_inputs", "memo")
    proc = subprocess.run(FWCONV + ["torch2onnx", str(path), "-o", str(sandbox / "x.onnx")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": os.environ["TMPDIR"]})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "would run code" in proc.stderr
    assert not canary.exists() and not (sandbox / "x.onnx").exists()


# -- size caps --------------------------------------------------------------------------------------

def test_zip_bomb_is_refused_without_reading_it(sandbox):
    bomb = sandbox / "bomb.pt"
    H.zip_bomb_pt(str(bomb))
    assert bomb.stat().st_size < 2_000_000
    start = time.perf_counter()
    r = invoke("inspect", bomb)
    assert_refused(r, 2, "compression bomb")
    assert time.perf_counter() - start < 5
    assert_refused(invoke("--max-size", "none", "inspect", bomb), 2, "compression bomb")  # the ratio rule stays


def test_declared_tensor_size_is_capped(clean_models, sandbox, monkeypatch):
    huge = sandbox / "huge.pt2"
    H.pt2_with_huge_weight(clean_models["pt2"], str(huge))
    assert_refused(invoke("inspect", huge), 2, "over the", "--max-size")
    monkeypatch.setenv("FWCONV_MAX_SIZE", "none")  # lifted: the record still does not fit its payload
    assert_refused(invoke("inspect", huge), 2, "payload holds")
    monkeypatch.delenv("FWCONV_MAX_SIZE")
    r = invoke("--max-size", "1K", "inspect", clean_models["pt2"])  # the cap is real for honest files too
    assert_refused(r, 2, "cap")
    monkeypatch.delenv("FWCONV_MAX_SIZE")
    assert invoke("--max-size", "none", "inspect", clean_models["pt2"]).exit_code == 0
    assert_refused(invoke("--max-size", "lots", "inspect", clean_models["pt2"]), 2, "bad size")


# -- outputs never touch inputs; --force replaces only what fwconv wrote --------------------------

def test_outputs_aimed_at_inputs_are_refused(clean_models, sandbox, monkeypatch):
    src = sandbox / "m.pt2"
    shutil.copy(clean_models["pt2"], src)
    npz = sandbox / "in.npz"
    shutil.copy(clean_models["npz"], npz)
    (sandbox / "keep.txt").write_text("mine")
    before = {p.name: digest(p) for p in sandbox.iterdir()}
    monkeypatch.chdir(sandbox)
    cases = [
            (("torch2savedmodel", "m.pt2", "-o", ".", "--force"), "contains the input"),
            (("torch2onnx", "m.pt2", "-o", "m.pt2", "--force"), "is the input"),
            (("torch2onnx", "m.pt2", "-o", "in.npz", "--inputs", "in.npz", "--force"), "is the input"),
            (("torch2onnx", "m.pt2", "-o", "x.onnx", "--json", "m.pt2", "--force"), "is the input"),
            (("validate", "m.pt2", "m.pt2", "--json", "m.pt2"), "is the input"),
            (("validate", "m.pt2", "m.pt2", "--markdown", "in.npz", "--inputs", "in.npz", "--force"), "is the input"),
    ]
    for args, words in cases:
        assert_refused(invoke(*args), 2, words)
    assert {p.name: digest(p) for p in sandbox.iterdir()} == before


def test_force_never_replaces_a_directory_fwconv_did_not_write(clean_models, sandbox):
    mine = sandbox / "photos"
    mine.mkdir()
    (mine / "a.jpg").write_bytes(b"jpg")
    r = invoke("torch2savedmodel", clean_models["pt2"], "-o", mine, "--force", "--no-validate")
    assert_refused(r, 2, "fwconv did not write it")
    assert (mine / "a.jpg").read_bytes() == b"jpg" and len(list(mine.iterdir())) == 1


def test_output_inside_a_source_directory_is_refused(sandbox, tmp_path):
    """A SavedModel source directory is never written into (nor replaced)."""
    sm = sandbox / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"\x08\x01")
    before = digest(sm)
    assert_refused(invoke("savedmodel2onnx", sm, "-o", sm / "x.onnx"), 2, "lies inside the input")
    assert_refused(invoke("savedmodel2onnx", sm, "-o", sm, "--force"), 2)
    assert digest(sm) == before and sorted(p.name for p in sm.iterdir()) == ["saved_model.pb"]


def test_reports_follow_the_output_rules(clean_models, sandbox):
    """An existing report needs --force; a symlinked report path replaces the link, never its target."""
    target = sandbox / "elsewhere.txt"
    target.write_text("do not touch")
    link = sandbox / "report.json"
    link.symlink_to(target)
    args = ("validate", clean_models["pt2"], clean_models["pt"], "--no-latency", "--json", link)
    assert_refused(invoke(*args), 2, "already exists")
    r = invoke(*args, "--force")
    assert r.exit_code == 0, r.output
    assert target.read_text() == "do not touch"
    assert not link.is_symlink() and '"schema"' in link.read_text() or "reference" in link.read_text()


def test_unwritable_outputs_fail_before_the_model_loads(clean_models, sandbox):
    start = time.perf_counter()
    assert_refused(invoke("torch2onnx", clean_models["pt2"], "-o", "/proc/fwconv/x.onnx"), 2, "cannot write")
    assert_refused(invoke("torch2onnx", clean_models["pt2"], "-o", "/sys/x.onnx"), 2, "cannot write")
    assert time.perf_counter() - start < 10


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare -m as root")
def test_read_only_filesystem_is_exit_2(clean_models, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} && "
              f"exec {sys.executable} -m fwconv.cli torch2onnx {clean_models['pt2']} -o {ro}/x.onnx")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    if "mount" in proc.stderr and proc.returncode != 2:
        pytest.skip(f"cannot make a read-only mount here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 2 and "cannot write" in proc.stderr, proc.stderr


# -- corrupt models give exit 2, typed errors survive process isolation ----------------------------

def test_corrupt_models_are_exit_2(clean_models, sandbox, convert_cached, models_dir, monkeypatch):
    tfl = convert_cached(str(models_dir / "mlp.pt2"), "tflite", via="litert").artifact
    data = open(tfl, "rb").read()
    (sandbox / "trunc.tflite").write_bytes(data[: len(data) // 2])
    (sandbox / "rand.tflite").write_bytes(data[:8] + os.urandom(4000))
    for name, pb in (("sm_random", os.urandom(600)), ("sm_trunc", b"\x08\x01\x12\x80\x10"), ("sm_empty", b"")):
        (sandbox / name).mkdir()
        (sandbox / name / "saved_model.pb").write_bytes(pb)
    import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).export(str(sandbox / "sm_novars"), verbose=False)
    shutil.rmtree(sandbox / "sm_novars" / "variables")  # a SavedModel whose weights are gone
    np.savez(sandbox / "f64.npz", x=np.random.rand(2, 32))  # float64 for a float32 model
    cases = [("tflite2onnx", "trunc.tflite"), ("tflite2onnx", "rand.tflite"),
             ("validate", clean_models["pt2"], "trunc.tflite"),  # isolated runner: the type crosses the pipe
             ("validate", clean_models["pt2"], "rand.tflite", "--in-process"),
             ("savedmodel2onnx", "sm_random"), ("savedmodel2onnx", "sm_trunc"), ("savedmodel2onnx", "sm_empty"),
             ("savedmodel2onnx", "sm_novars"),
             ("validate", clean_models["pt2"], "sm_random"),
             ("torch2onnx", clean_models["pt2"], "--input-shape", "3,7"),  # conflicts with the .pt2's shapes
             ("torch2onnx", clean_models["pt2"], "--inputs", "f64.npz")]
    monkeypatch.chdir(sandbox)
    for args in cases:
        extra = ["--no-latency"] if args[0] == "validate" else ["-o", "out.onnx"]
        assert_refused(invoke(*args, *extra), 2)
    assert not (sandbox / "out.onnx").exists()


def test_error_types_survive_process_isolation():
    from fwconv.errors import ModelLoadError, UnsupportedOpError, rebuild

    e = rebuild("UnsupportedOpError", "check failed: FlexErf", 5)
    assert isinstance(e, UnsupportedOpError) and e.exit_code == 5 and e.one_line() == "check failed: FlexErf"
    assert isinstance(rebuild("ModelLoadError", "x", 2), ModelLoadError)
    assert rebuild("os.system", "x", 1).exit_code == 1  # only fwconv's own error classes are rebuilt


# -- gate configs --------------------------------------------------------------------------------

@pytest.mark.parametrize("body, words", [
    ('[[model]]\nname = "/tmp/evil"\nsource = "m.pt2"\ntargets = ["onnx"]', "not a plain name"),
    ('[[model]]\nname = "../../escape"\nsource = "m.pt2"\ntargets = ["onnx"]', "not a plain name"),
    ("model = 5", "array of tables"),
    ('[gate]\ntimeout = "soon"\n[[model]]\nname = "a"\nsource = "m.pt2"\ntargets = ["onnx"]', "'timeout' must be"),
    ('[[model]]\nname = "a"\nsource = "m.pt2"\ntargets = "onnx"', "'targets' must be"),
    ('[[model]]\nname = "a"\nsource = "m.pt2"\ntargets = ["onnx"]\ntolerance = { y = "big" }', "'tolerance' values"),
    ('[[model]]\nname = "a"\nsource = "m.pt2"\ntargets = ["onnx"]\nsamples = true', "'samples' must be"),
    ('[[model]]\nname = "a"\nsource = "m.pt2"\ntargets = ["onnx"]\ndynamic = [1]', "each entry is a string"),
    ('[[model]]\nname = "a"\nsource = "m.pt2"\ntargets = ["onnx"]\ndynamic = ["batch", "x:0"]', "twice"),
])
def test_hostile_gate_configs(body, words, sandbox):
    config = sandbox / "gate.toml"
    config.write_text(body)
    assert_refused(invoke("gate", config), 2, words)
    assert sorted(p.name for p in sandbox.iterdir()) == ["gate.toml"]
    assert not os.path.exists("/tmp/evil")


def test_gate_config_that_is_a_directory(sandbox):
    assert_refused(invoke("gate", sandbox), 2, "not a file")


def test_gate_report_never_overwrites_the_config(sandbox, clean_models):
    config = sandbox / "gate.toml"
    config.write_text(f'[[model]]\nname = "a"\nsource = "{clean_models["pt2"]}"\ntargets = ["onnx"]\n')
    before = digest(config)
    assert_refused(invoke("gate", config, "--junit", config, "--force"), 2, "is the input")
    assert digest(config) == before


# -- machine-readable output stays machine-readable ---------------------------------------------

def test_junit_strips_terminal_codes_and_control_characters():
    from fwconv.gate.report import to_junit
    from fwconv.gate.result import JobResult

    hostile = "export failed: \x1b[31mRed\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07 \x00\x08\x1b[1mbold"
    results = [{"id": "m:onnx", "model": "m\x1b[0m", "target": "onnx", "status": "error", "exit_code": 1,
                "messages": [hostile], "seconds": 1.0}]
    root = ET.fromstring(to_junit([JobResult.from_dict(r) for r in results]).encode())
    message = root.find(".//error").get("message")
    assert "Red" in message and "\x1b" not in message and "\x00" not in message and "[31m" not in message


def test_validation_junit_with_hostile_output_names():
    from fwconv.validators.compare import ValidationReport
    from fwconv.validators.metrics import OutputParity
    from fwconv.validators.report import to_junit

    out = OutputParity(name="logits\x1b[0m\x01", shape=[1], dtype="float32", passed=False, tolerance={},
                       failure="max error \x1b[31m2.0\x1b[0m > 1e-4", metrics={"max_abs_err": 2.0})
    report = ValidationReport(reference={}, candidate={}, samples=1, seed=0, inputs=[], input_bindings=[],
                              output_bindings=[], outputs=[out])
    case = ET.fromstring(to_junit(report).encode()).find(".//testcase")
    assert case.get("name") == "parity[logits]" and "\x1b" not in case.find("failure").get("message")


# -- interrupts ----------------------------------------------------------------------------------

def _interrupt(args, sig, delay, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    proc = subprocess.Popen(FWCONV + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TMPDIR": str(tmp)})
    time.sleep(delay)
    assert proc.poll() is None, "finished before the signal: raise the delay"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, tmp


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_end_a_conversion_cleanly(sig, code, clean_models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    rc, err, tmp = _interrupt(["torch2tflite", clean_models["pt2"], "-o", out / "m.tflite", "--via", "onnx"],
                              sig, 6, tmp_path)
    assert rc == code, err
    assert err.strip().splitlines()[-1].startswith("fwconv: error: interrupted by")
    assert list(out.iterdir()) == []
    assert not [p for p in tmp.iterdir() if p.name.startswith(("fwconv", ".fwconv"))]


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_of_validate(clean_models, tmp_path):
    """Ctrl-C reaches every process of the group: the isolated runners stay quiet (no traceback
    of their own), the parent says one line, exits 130 and no runner process outlives it."""
    import psutil

    proc = subprocess.Popen(FWCONV + ["validate", clean_models["pt2"], clean_models["pt"], "--input-shape", "2,32",
                                      "--runs", "1000000", "--min-seconds", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline and len(psutil.Process(proc.pid).children(recursive=True)) < 2:
        time.sleep(0.2)
    time.sleep(3)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2, "the isolated runners did not start"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["fwconv: error: interrupted by SIGINT; nothing was written"]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not [" ".join(c.cmdline()[-3:]) for c in alive if c.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_sigterm_stops_gate_workers(clean_models, tmp_path):
    import psutil

    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\noutput_dir = "arts"\n[[model]]\nname = "a"\nsource = "{clean_models["pt2"]}"\n'
                      'targets = ["tflite"]\nvia = "onnx"\n')
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(FWCONV + ["gate", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})
    deadline = time.time() + 60
    while time.time() < deadline and not psutil.Process(proc.pid).children(recursive=True):
        time.sleep(0.2)
    time.sleep(4)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers, "no worker started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    # (a grace period: multiprocessing's resource tracker leaves once the gate and its workers are gone)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]
    arts = tmp_path / "arts"
    assert not [p for p in arts.rglob("*") if p.suffix == ".tflite" or p.name.startswith(".fwconv-")]
    assert not [p for p in tmp.iterdir() if p.name.startswith(("fwconv", ".fwconv"))]


# -- the default route is deterministic ----------------------------------------------------------

@pytest.mark.slow
def test_auto_route_gives_the_same_bytes_and_works_across_filesystems(models_dir, tmp_path):
    """Two default (auto: both routes, validated and timed) conversions of one model, each in its
    own process as a user runs them, give byte-identical artifacts; the second runs with TMPDIR on
    another filesystem (/dev/shm), where a plain rename from scratch to the output fails."""
    import json

    other_fs = "/dev/shm" if os.path.isdir("/dev/shm") and os.stat("/dev/shm").st_dev != os.stat(tmp_path).st_dev \
        else str(tmp_path)
    chosen, digests = [], []
    for name, tmp in (("first", str(tmp_path)), ("second", tempfile.mkdtemp(dir=other_fs))):
        out = tmp_path / f"{name}.tflite"
        try:
            proc = subprocess.run(FWCONV + ["torch2tflite", str(models_dir / "cnn.pt2"), "-o", str(out)],
                                  capture_output=True, text=True, timeout=600, env={**os.environ, "TMPDIR": tmp})
        finally:
            if tmp != str(tmp_path):
                shutil.rmtree(tmp, ignore_errors=True)
        assert proc.returncode == 0, proc.stderr
        manifest = json.loads((tmp_path / f"{name}.tflite.fwconv.json").read_text())
        chosen.append((manifest["extra"]["chosen_route"], manifest["extra"]["routes"]))
        digests.append(digest(out))
    assert chosen[0][0] == chosen[1][0], chosen
    assert digests[0] == digests[1]


# -- found by a hostile pass: code without pickles, paths through links, odd inputs -----------------

@pytest.mark.parametrize("where", ["aoti", "expr", "guard"])
def test_pt2_code_without_pickles_never_runs(where, clean_models, sandbox):
    """AOTInductor libraries, sympy-evaluated shape expressions and exec'd guard code: refused
    before torch.export.load sees them, in every command."""
    canary = sandbox / "CANARY"
    path = sandbox / f"{where}.pt2"
    H.pt2_with_code(clean_models["pt2"], str(path), str(canary), where)
    for args in (("inspect", path), ("torch2onnx", path, "-o", sandbox / "o.onnx"),
                 ("validate", path, clean_models["pt2"], "--no-latency")):
        assert_refused(invoke(*args), 2, "would run code")
        assert not canary.exists(), f"{where}: the payload ran ({args[0]})"
    assert not (sandbox / "o.onnx").exists()


def test_torchscript_that_writes_files_is_refused(sandbox):
    target = sandbox / "victim.txt"
    target.write_text("precious")
    path = sandbox / "writer.pt"
    H.torchscript_writing_a_file(str(path), str(target))
    assert_refused(invoke("torch2onnx", path, "--input-shape", "2,4", "-o", sandbox / "w.onnx"), 2, "from_file")
    assert target.read_text() == "precious"


def test_zip_members_that_do_not_check_out_are_refused(clean_models, sandbox):
    bad = sandbox / "crc.pt2"
    H.corrupt_member_crc(clean_models["pt2"], str(bad), "weight_0")
    assert_refused(invoke("inspect", bad), 2, "checksum")
    import zipfile

    legacy = sandbox / "legacy_weights.pt2"  # a raw pickle as a legacy weights file inside the .pt2
    root = zipfile.ZipFile(clean_models["pt2"]).namelist()[0].split("/")[0]
    H.rewrite_zip(clean_models["pt2"], str(legacy), {},
                  add={f"{root}/data/weights/model.pt": H.command_pickle(str(sandbox / "CANARY"), "proto0")})
    from fwconv.models.pickle_scan import unsafe_globals

    assert "posix.system" in unsafe_globals(str(legacy))


def test_outputs_through_symlinks_and_working_directory(clean_models, sandbox, monkeypatch):
    """`link/../x` is where the link points, up one; a directory holding the working directory is
    never replaced; a package.module:fn factory's file is an input too."""
    real = sandbox / "real"
    (real / "sub").mkdir(parents=True)
    shutil.copy(clean_models["pt2"], real / "m.pt2")
    (sandbox / "link").symlink_to(real / "sub")
    before = digest(real / "m.pt2")
    monkeypatch.chdir(sandbox)
    assert_refused(invoke("torch2onnx", "real/m.pt2", "-o", "link/../m.pt2", "--force", "--no-validate"), 2,
                   "is the input")
    assert digest(real / "m.pt2") == before
    made = sandbox / "sm"
    made.mkdir()
    (made / "fwconv.json").write_text('{"generator": "fwconv"}')
    (made / "notes.txt").write_text("mine")
    monkeypatch.chdir(made)
    assert_refused(invoke("torch2savedmodel", clean_models["pt2"], "-o", made, "--force", "--no-validate"), 2,
                   "working directory")
    assert (made / "notes.txt").read_text() == "mine"
    pkg = sandbox / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "net.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    monkeypatch.chdir(sandbox)
    monkeypatch.syspath_prepend(str(sandbox))
    assert_refused(invoke("torch2onnx", "mypkg.net:build", "--input-shape", "2,4", "-o", pkg / "net.py", "--force"), 2,
                   "is the input")
    assert "def build" in (pkg / "net.py").read_text()


def test_reports_never_overwrite_the_manifest_or_each_other(clean_models, sandbox):
    out = sandbox / "m.onnx"
    assert_refused(invoke("torch2onnx", clean_models["pt2"], "-o", out, "--json", f"{out}.fwconv.json", "--force"), 2)
    assert_refused(invoke("torch2onnx", clean_models["pt2"], "-o", out, "--json", sandbox / "r", "--junit",
                          sandbox / "r"), 2, "same file")
    assert not out.exists()


def test_gate_writes_only_by_the_output_rules(clean_models, sandbox):
    """--save-baseline at the config, a golden directory holding an input, a job whose artifact is
    another job's source, malformed option values: all exit 2 before any job runs."""
    shutil.copy(clean_models["pt2"], sandbox / "m.pt2")
    (sandbox / "data").mkdir()
    shutil.copy(clean_models["npz"], sandbox / "data" / "inputs.npz")
    config = sandbox / "g.toml"
    base = '[[model]]\nname = "a"\nsource = "m.pt2"\ntargets = ["onnx"]\n'
    config.write_text(base)
    assert_refused(invoke("gate", config, "--save-baseline", config, "--force"), 2, "is the input")
    golden = sandbox / "golden.toml"
    golden.write_text('[[model]]\nname = "a"\nsource = "m.pt2"\ninputs = "data/inputs.npz"\ngolden = "data"\n'
                      'targets = ["onnx"]\n')
    npz_before = digest(sandbox / "data" / "inputs.npz")
    assert_refused(invoke("golden", "save", golden), 2, "is the input")
    assert digest(sandbox / "data" / "inputs.npz") == npz_before
    chained = sandbox / "chained.toml"
    chained.write_text('[gate]\noutput_dir = "arts"\n' + base + '[[model]]\nname = "b"\nsource = "arts/a/a.onnx"\n'
                       'targets = ["tflite"]\n')
    (sandbox / "arts" / "a").mkdir(parents=True)
    (sandbox / "arts" / "a" / "a.onnx").write_bytes(b"users own")
    assert_refused(invoke("gate", chained), 2, "is the input")
    for extra, words in (('via = "bogus"', "unknown via"), ("atol = -1.0", "negative"), ("samples = 0", "at least 1"),
                         ('input_shape = ["a,b"]', "bad shape"), ("targets = []", "empty")):
        body = base.replace('targets = ["onnx"]\n', "") + (extra + "\n" if "targets" in extra else f'targets = ["onnx"]\n{extra}\n')
        config.write_text(body)
        assert_refused(invoke("gate", config), 2, words)


def test_more_odd_inputs_are_exit_2(clean_models, sandbox):
    fifo = sandbox / "fifo.npz"
    os.mkfifo(fifo)
    assert_refused(invoke("torch2onnx", clean_models["pt2"], "--inputs", fifo, "-o", sandbox / "a.onnx"), 2,
                   "not a regular file")
    assert_refused(invoke("torch2onnx", clean_models["pt2"], "--input-shape", "100000,100000,100000"), 2, "cap")
    assert_refused(invoke("torch2onnx", clean_models["pt2"], "--input-shape", "99999999999999999999999,32"), 2)
    assert_refused(invoke("validate", clean_models["pt2"], clean_models["pt"], "--atol", "nan"), 2, "finite")
    assert_refused(invoke("validate", clean_models["pt2"], clean_models["pt"], "--timeout", "0"), 2)
    keras_file = sandbox / "odd.keras"
    import zipfile

    with zipfile.ZipFile(keras_file, "w") as zf:
        zf.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": 5}}')
        zf.writestr("metadata.json", "{}")
    assert_refused(invoke("inspect", keras_file), 2)


def test_onnx_external_data_is_located_and_capped(sandbox):
    import onnx
    from onnx import TensorProto, helper

    tensor = helper.make_tensor("W", TensorProto.FLOAT, [4], [0.0] * 4)
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.float_data[:]
    for location, length, words in (("../outside.bin", 16, "outside the model's folder"),
                                    ("big.bin", 18 << 30, "cap"), ("missing.bin", 16, "missing")):
        tensor.ClearField("external_data")
        for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
            tensor.external_data.add(key=key, value=value)
        graph = helper.make_graph([helper.make_node("Identity", ["W"], ["y"])], "g", [],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [tensor])
        path = sandbox / "ext.onnx"
        onnx.save(helper.make_model(graph), path)
        assert_refused(invoke("inspect", path), 2, words)
