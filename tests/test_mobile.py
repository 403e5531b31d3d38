"""Mobile artifacts: route choice, quantization (fp16/dynamic/int8), the app-ready manifest, inspect."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from conftest import invoke, run_torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calibration(tmp_path_factory, models_dir):
    """'Realistic' calibration: samples from the distribution the model is validated on."""
    path = tmp_path_factory.mktemp("calib") / "cnn_calib.npz"
    rng = np.random.default_rng(42)
    np.savez(path, image=rng.standard_normal((48, 1, 3, 32, 32)).astype(np.float32))
    return path


# A factory whose graph is wrong only when litert-torch traces it (a fault planted in one route):
# PyTorch's eager reference and the ONNX exporter's trace see the right model.
WRONG_UNDER_LITERT = textwrap.dedent("""
    import inspect, torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x).relu()
            if any("litert_torch" in (f.frame.f_globals.get("__name__") or "") for f in inspect.stack()):
                y = y + 1.0
            return y

    def build():
        torch.manual_seed(0)
        return Net().eval()
    """)


def test_auto_keeps_the_first_route_that_passes_and_skips_the_rest(models_dir, tmp_path):
    result = _convert(models_dir / "transformer.pt2", tmp_path / "t.tflite")  # --via auto is the default
    routes = result.manifest.extra["routes"]
    assert [(r["route"], r["status"]) for r in routes] == [("torch -> tflite (litert)", "pass"),
                                                           ("torch -> onnx -> tflite", "skipped")], routes
    assert "--via best" in routes[1]["why"]
    assert result.manifest.extra["chosen_route"] == "torch -> tflite (litert)"
    assert result.validation.parity_passed


def test_auto_falls_back_to_the_next_route_when_the_first_fails_parity(tmp_path):
    factory = tmp_path / "wrong_under_litert.py"
    factory.write_text(WRONG_UNDER_LITERT)
    result = _convert(f"{factory}:build", tmp_path / "m.tflite", input_shape=["1,3,8,8"])
    routes = {r["route"]: r["status"] for r in result.manifest.extra["routes"]}
    assert routes == {"torch -> tflite (litert)": "parity_failed", "torch -> onnx -> tflite": "pass"}, routes
    assert result.manifest.extra["chosen_route"] == "torch -> onnx -> tflite"
    assert result.validation.parity_passed and (tmp_path / "m.tflite").exists()


def _convert(source, out, **options):
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert
    from fwconv.validators.compare import ValidateSettings
    from fwconv.validators.latency import LatencySettings

    settings = ValidateSettings(latency=LatencySettings(warmup_runs=5, runs=50))
    return convert(str(source), "tflite", str(out), ConvertOptions(**options), settings)


def test_best_keeps_the_fastest_passing_route(models_dir, tmp_path):
    result = _convert(models_dir / "transformer.pt2", tmp_path / "t.tflite", via="best")
    routes = result.manifest.extra["routes"]
    assert {r["route"] for r in routes} == {"torch -> tflite (litert)", "torch -> onnx -> tflite"}
    passing = [r for r in routes if r["status"] == "pass"]
    assert passing, routes
    from fwconv.convert.route_choice import TIE_FLOOR_MS, TIE_RATIO

    fastest = min(r["p50_ms"] for r in passing)
    noise = max(TIE_RATIO * fastest, TIE_FLOOR_MS, 2 * max(r["std_ms"] for r in passing))
    tied = [r for r in passing if r["p50_ms"] <= fastest + noise]  # within noise of the fastest: a tie
    expected = min(tied, key=lambda r: (r["size_bytes"], routes.index(r)))  # the smaller, then the earlier
    assert result.manifest.extra["chosen_route"] == expected["route"], routes
    assert result.validation.parity_passed


def test_torchscript_source_uses_the_route_that_applies(models_dir, tmp_path):
    """--via litert on a TorchScript .pt: through TS2EP (issue 25); with --dynamic, TS2EP keeps the
    batch symbolic, as a .pt2 exported with a Dim would, and the default route takes it (litert-torch
    cannot lower this MLP with a variable batch: its own one-line error when asked for by name)."""
    r = invoke("torch2tflite", models_dir / "mlp.pt", "--input-shape", "2,32", "--via", "litert", "--no-latency",
               "-o", tmp_path / "m.tflite")
    assert r.exit_code == 0 and "TS2EP" in r.output, r.output
    r = invoke("torch2tflite", models_dir / "mlp.pt", "--input-shape", "2,32", "--dynamic", "batch:1..4",
               "--no-latency", "-o", tmp_path / "d.tflite")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "d.tflite.fwconv.json").read_text())
    assert "dims kept dynamic: batch" in manifest["extra"]["ts2ep"]["detail"]
    assert manifest["extra"]["dynamic"][0]["max"] == 4 and len(manifest["validation"]["shapes"]) > 1
    r = invoke("torch2tflite", models_dir / "mlp.pt", "--input-shape", "2,32", "--via", "litert", "--no-validate",
               "--dynamic", "batch:1..4", "-o", tmp_path / "l.tflite")
    assert r.exit_code == 1 and "litert-torch failed" in r.output and not (tmp_path / "l.tflite").exists()


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_quantized_artifacts_hold_int8_and_pass_their_thresholds(mode, models_dir, convert_cached, calibration, sample):
    src = str(models_dir / "cnn.pt2")
    extra = {"calibration": str(calibration)} if mode == "int8" else {}
    fp32 = convert_cached(src, "tflite", via="onnx", inputs=str(models_dir / "cnn.npz"))
    q = convert_cached(src, "tflite", quantize=mode, inputs=str(models_dir / "cnn.npz"), **extra)
    assert q.manifest.ops["tensor_types"].get("INT8", 0) > 0
    assert q.manifest.size_bytes < 0.6 * fp32.manifest.size_bytes
    assert q.validation.parity_passed and q.validation.outputs[0].tolerance["precision"] == "int8"
    # the test's own check, on a sample fwconv did not calibrate on
    from ai_edge_litert.interpreter import Interpreter

    feed = sample("cnn")
    out = Interpreter(model_path=q.artifact).get_signature_runner("serving_default")(**feed)["output"]
    ref = run_torch(src, feed)[0]
    cos = float(np.dot(ref.ravel(), out.ravel()) / np.linalg.norm(ref) / np.linalg.norm(out))
    assert cos > 0.98 and int(np.argmax(ref)) == int(np.argmax(out))


def test_int8_io_carries_quantization_parameters(models_dir, convert_cached, calibration):
    q = convert_cached(str(models_dir / "cnn.pt2"), "tflite", quantize="int8", int8_io=True,
                       calibration=str(calibration), inputs=str(models_dir / "cnn.npz"))
    with open(q.artifact + ".fwconv.json") as f:
        manifest = json.load(f)
    tensor = manifest["inputs"][0]
    assert tensor["dtype"] == "int8" and tensor["layout"] == "NCHW"
    assert tensor["quantization"]["scale"] > 0 and -128 <= tensor["quantization"]["zero_point"] <= 127
    assert manifest["outputs"][0]["dtype"] == "int8" and manifest["outputs"][0]["quantization"]["scale"] > 0
    assert q.validation.parity_passed  # the runner quantizes inputs / dequantizes outputs like an app would


def test_int8_without_calibration_is_refused(models_dir, tmp_path):
    out = tmp_path / "q.tflite"
    r = invoke("torch2tflite", models_dir / "cnn.pt2", "--quantize", "int8", "-o", out)
    assert r.exit_code == 2 and "needs calibration data" in r.output
    assert not out.exists()
    r = invoke("torch2tflite", models_dir / "cnn.pt2", "--int8-io", "-o", out)
    assert r.exit_code == 2


def test_inspect_describes_every_format(models_dir, convert_cached, calibration):
    src = str(models_dir / "two_io.pt2")
    arts = {
        "tflite": convert_cached(src, "tflite", via="onnx").artifact,
        "onnx": convert_cached(src, "onnx").artifact,
        "savedmodel": convert_cached(src, "savedmodel").artifact,
        "exported": src,
        "torchscript": str(models_dir / "two_io.pt"),
    }
    for fmt, path in arts.items():
        r = invoke("inspect", path, "--json")
        assert r.exit_code == 0, r.output
        info = json.loads(r.output)
        assert info["format"] == fmt
        names = [i["name"] for i in info["inputs"]]
        # a SavedModel signature takes keyword inputs: TF does not keep one order for them
        assert (sorted(names) if fmt == "savedmodel" else names) == ["image", "meta"], (fmt, info["inputs"])
        if fmt in ("tflite", "onnx", "savedmodel"):
            assert sorted(o["name"] for o in info["outputs"]) == ["output_0", "output_1"]
            assert info["fwconv"]["validation"]["status"] == "pass"
    r = invoke("inspect", arts["tflite"])
    assert "input  image: float32[1, 3, 16, 16] NCHW" in r.output and "flex: none" in r.output


def test_flex_model_fails_builtin_only_naming_the_op(tmp_path):
    factory = tmp_path / "inv.py"
    factory.write_text("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
                       "        return torch.linalg.det(x) * 2\ndef build():\n    return M()\n")
    r = invoke("torch2tflite", f"{factory}:build", "--input-shape", "2,3,3", "--via", "onnx", "-o", tmp_path / "m.tflite")
    assert r.exit_code == 5 and "FlexMatrixDeterminant" in r.output
