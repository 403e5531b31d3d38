"""`fwconv validate` against real runtimes: verdicts, metrics, alignment, failures, crashes, latency."""

from __future__ import annotations

import json
import shutil
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import run_litert, run_torch
from fwconv.cli import main

pytestmark = pytest.mark.slow


def invoke(*args):
    return CliRunner().invoke(main, ["validate", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def cnn(models_dir, convert_cached):
    src = str(models_dir / "cnn.pt2")
    npz = str(models_dir / "cnn.npz")
    return {
        "pt2": src, "pt": str(models_dir / "cnn.pt"), "npz": npz,
        "onnx": convert_cached(src, "onnx", inputs=npz).artifact,
        "tflite": convert_cached(src, "tflite", inputs=npz, via="onnx").artifact,
        "tflite16": convert_cached(src, "tflite", inputs=npz, fp16=True).artifact,
        "savedmodel": convert_cached(src, "savedmodel", inputs=npz).artifact,
    }


@pytest.mark.parametrize("candidate", ["onnx", "tflite", "tflite16", "savedmodel", "pt"])
def test_torch_vs_each_format_passes(cnn, candidate, tmp_path):
    r = invoke(cnn["pt2"], cnn[candidate], "--inputs", cnn["npz"], "--in-process", "--runs", "5",
               "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "pass"
    assert data["outputs"][0]["tolerance"]["precision"] == ("fp16" if candidate == "tflite16" else "fp32")


def test_reported_metrics_match_direct_computation(cnn, tmp_path):
    r = invoke(cnn["pt2"], cnn["tflite"], "--inputs", cnn["npz"], "--in-process", "--no-latency",
               "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml", "--markdown", tmp_path / "r.md")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r.json").read_text())
    with np.load(cnn["npz"]) as d:
        feed = {k: d[k] for k in d.files}
    ref = run_torch(cnn["pt2"], feed)[0].astype(np.float64)
    cand = next(iter(run_litert(cnn["tflite"], feed).values())).astype(np.float64)
    m = data["outputs"][0]["metrics"]
    assert m["max_abs_err"] == pytest.approx(np.abs(cand - ref).max(), rel=1e-6, abs=1e-12)
    assert m["mean_abs_err"] == pytest.approx(np.abs(cand - ref).mean(), rel=1e-6, abs=1e-12)
    assert m["argmax_agreement"] == float(np.mean(ref.argmax(-1) == cand.argmax(-1)))
    cases = ET.parse(tmp_path / "r.xml").getroot().find("testsuite").findall("testcase")
    assert [c.get("name") for c in cases] == ["parity[output]"]
    assert "fwconv validate: pass" in (tmp_path / "r.md").read_text()


def _perturbed_onnx(path: str, out: str) -> str:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(biggest).copy()
    arr.flat[0] += 0.5 * (np.abs(arr).max() + 1)  # one weight
    biggest.CopyFrom(numpy_helper.from_array(arr, biggest.name))
    onnx.save(model, out)
    return out


def _perturbed_tflite(path: str, out: str) -> str:
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model(path)
    buf = max(model.buffers, key=lambda b: 0 if b.data is None else len(b.data))
    weights = np.frombuffer(bytes(buf.data), dtype=np.float32).copy()
    weights[0] += 0.5 * (np.abs(weights).max() + 1)
    buf.data = np.frombuffer(weights.tobytes(), dtype=np.uint8)
    fbu.write_model(model, out)
    return out


def test_one_perturbed_weight_fails_with_parity_exit_code(cnn, tmp_path):
    for broken in (_perturbed_onnx(cnn["onnx"], str(tmp_path / "bad.onnx")),
                   _perturbed_tflite(cnn["tflite"], str(tmp_path / "bad.tflite"))):
        r = invoke(cnn["pt2"], broken, "--inputs", cnn["npz"], "--in-process", "--no-latency")
        assert r.exit_code == 3, r.output
        assert "output 'output'" in r.output and "worst at index" in r.output
        assert "verdict: PARITY FAILED" in r.output


def test_different_model_with_same_signature_fails(cnn, tmp_path):
    import torch

    from fixtures.models import SmallCNN, example_inputs

    torch.manual_seed(123)
    other = SmallCNN().eval()
    torch.export.save(torch.export.export(other, example_inputs("cnn")), tmp_path / "other.pt2")
    r = invoke(cnn["pt2"], tmp_path / "other.pt2", "--in-process", "--no-latency", "--samples", "2")
    assert r.exit_code == 3, r.output


def test_nchw_source_vs_nhwc_artifact_aligns(models_dir, convert_cached, tmp_path):
    src = str(models_dir / "two_io.pt2")
    art = convert_cached(src, "tflite", inputs=str(models_dir / "two_io.npz"), layout="nhwc").artifact
    r = invoke(src, art, "--in-process", "--no-latency")
    assert r.exit_code == 0, r.output
    assert "pairing image -> image (manifest, transpose [0, 2, 3, 1])" in r.output
    bare = shutil.copy(art, tmp_path / "bare.tflite")  # no manifest: shapes decide, and say so
    r = invoke(src, bare, "--in-process", "--no-latency")
    assert r.exit_code == 0, r.output
    assert "NCHW->NHWC inferred from shapes" in r.output


def test_seeded_samples_are_reproducible(cnn, tmp_path):
    for name in ("a", "b"):
        r = invoke(cnn["pt2"], cnn["onnx"], "--in-process", "--no-latency", "--samples", "3", "--seed", "5",
                   "--json", tmp_path / f"{name}.json")
        assert r.exit_code == 0, r.output
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["samples"] == 3 and a["outputs"] == b["outputs"]


def test_latency_stats_and_budget(cnn, tmp_path):
    r = invoke(cnn["pt2"], cnn["tflite"], "--runs", "15", "--warmup", "2", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    lat = json.loads((tmp_path / "r.json").read_text())["latency"]
    for side in ("reference", "candidate"):
        s = lat[side]
        assert s["runs"] >= 15 and s["warmup_runs"] >= 2
        assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
        assert s["load_seconds"] > 0 and s["first_inference_ms"] > 0
        assert s["memory_mb"] > 10 and s["memory_kind"].startswith("peak RSS")  # isolated by default
    r = invoke(cnn["pt2"], cnn["tflite"], "--in-process", "--runs", "5", "--max-latency-ratio", "0.0001")
    assert r.exit_code == 4, r.output


CRASHY = """
import os, signal, time, torch
class Crash(torch.nn.Module):
    def forward(self, image):
        os.kill(os.getpid(), signal.SIGSEGV)
class Hang(torch.nn.Module):
    def forward(self, image):
        time.sleep(60)
        return image
def crash():
    return Crash()
def hang():
    return Hang()
"""


def test_crashing_or_hanging_runner_gives_clear_error(cnn, tmp_path):
    factory = tmp_path / "bad_models.py"
    factory.write_text(CRASHY)
    r = invoke(f"{factory}:crash", cnn["onnx"], "--inputs", cnn["npz"], "--no-latency")
    assert r.exit_code == 1
    assert "runner crashed during 'infer' (exit code -11)" in r.output
    r = invoke(f"{factory}:hang", cnn["onnx"], "--inputs", cnn["npz"], "--no-latency", "--timeout", "8")
    assert r.exit_code == 1
    assert "did not answer 'infer' within 8s" in r.output


def test_cuda_request_without_gpu_is_a_clear_error(cnn):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: covered by test_gpu_parity")
    r = invoke(cnn["pt2"], cnn["onnx"], "--device", "cuda", "--in-process", "--no-latency")
    assert r.exit_code == 1
    assert "--device cuda" in r.output and "Traceback" not in r.output


@pytest.mark.gpu
def test_gpu_parity_torch_vs_onnxruntime(cnn, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the GPU runners are exercised on a GPU machine")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA execution provider here")
    r = invoke(cnn["pt2"], cnn["onnx"], "--device", "cuda", "--runs", "20", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["reference"]["device"] == "cuda" and data["latency"]["candidate"]["p50_ms"] > 0


@pytest.mark.parametrize("command", ["validate", "debug"])
def test_positional_input_shape_names_the_onnx_models_first_input(cnn, command, tmp_path):
    """`--input-shape 1,3,32,32` without a name is the model's first input, whatever it is called
    (it used to feed 'input_0' to an ONNX model whose input is 'x': exit 1)."""
    r = CliRunner().invoke(main, [command, cnn["onnx"], cnn["onnx"], "--input-shape", "1,3,32,32", "--no-latency",
                                  *(["--in-process"] if command == "validate" else [])])
    assert r.exit_code == 0, r.output
    assert "missing from input feed" not in r.output
    bad = CliRunner().invoke(main, [command, cnn["onnx"], cnn["onnx"], "--input-shape", "nope:1,3,32,32", "--no-latency"])
    assert bad.exit_code == 2 and "--input-shape names 'nope'" in bad.output, bad.output
