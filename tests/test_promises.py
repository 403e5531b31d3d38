"""README promises no other test file covers, each checked end to end through the CLI.

Every conversion here is real (no mocks). A parity check runs the artifact in its own runtime
(LiteRT, ONNX Runtime, TensorFlow, TorchScript) inside the test; a negative test plants a fault
and expects the documented exit code (README: 0 ok, 1 runtime error, 2 bad input, 3 parity
failed, 4 latency, 5 unsupported op).
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap

import numpy as np
import pytest

from conftest import FLEX_FACTORY, invoke, run_litert, run_torch, scaled_error

pytestmark = pytest.mark.slow
FP32_LIMIT = 1e-4

DATA_DEPENDENT_FACTORY = """
import torch
from torch import nn


class DataDependent(nn.Module):
    \"\"\"Python control flow on a tensor's value: torch.export (the dynamo exporter) refuses it,
    the TorchScript exporter traces the branch the sample takes.\"\"\"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x) * 2
        return self.fc(x) - 1


def build():
    return DataDependent().eval()
"""



def manifest_of(artifact) -> dict:
    artifact = str(artifact)
    path = os.path.join(artifact, "fwconv.json") if os.path.isdir(artifact) else artifact + ".fwconv.json"
    with open(path) as f:
        return json.load(f)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def run_onnx(path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def run_torchscript(path, feed: dict[str, np.ndarray], by_name: bool = False) -> dict[str, np.ndarray]:
    import torch

    module = torch.jit.load(str(path))
    with torch.no_grad():
        tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
        out = module(**tensors) if by_name else module(*tensors.values())
    if isinstance(out, dict):
        return {k: v.numpy() for k, v in out.items()}
    outs = out if isinstance(out, tuple) else (out,)
    names = list(getattr(module, "output_names", None) or (["output"] if len(outs) == 1 else
                                                           [f"output_{i}" for i in range(len(outs))]))
    return {n: o.numpy() for n, o in zip(names, outs, strict=True)}  # by the source's output names


def leftovers(directory) -> list[str]:
    return sorted(p for p in os.listdir(directory) if p.startswith(".fwconv-"))


def fresh_image(seed: int, low: float = -3.0, high: float = 3.0) -> np.ndarray:
    """A cnn input fwconv never saw (not its sample, not its calibration data)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal((1, 3, 32, 32)), low, high).astype(np.float32)


@pytest.fixture(scope="module")
def cnn_onnx(models_dir, convert_cached):
    """The cnn as ONNX (shared with other test files through convert_cached)."""
    return convert_cached(str(models_dir / "cnn.pt2"), "onnx").artifact


@pytest.fixture(scope="module")
def mlp_onnx(models_dir, convert_cached):
    """The mlp as ONNX (Gemm/Relu/Tanh only; shared with other test files)."""
    return convert_cached(str(models_dir / "mlp.pt2"), "onnx").artifact


# -- 1. parity failure: nothing written, unless --keep-failed ----------------------------------

def test_parity_failure_writes_nothing_and_keep_failed_keeps_it(models_dir, tmp_path):
    """fp16 weights cannot reproduce fp32 outputs exactly (~1e-4 of scale here), so a per-output
    tolerance of 1e-30 (explicit tolerances govern on their own) fails honestly, on every run."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "cnn16.tflite"
    report = tmp_path / "report.json"
    args = ["torch2tflite", models_dir / "cnn.pt2", "--via", "onnx", "--fp16", "--tolerance", "output=1e-30",
            "--no-latency", "-o", out]
    r = invoke(*args, "--json", report)
    assert r.exit_code == 3, r.output
    assert "verdict: PARITY FAILED" in r.output and "output 'output'" in r.output
    assert "artifact not written" in r.output and r.output.count("fwconv: error:") == 1
    assert "Traceback" not in r.output
    assert os.listdir(out_dir) == []  # no artifact, no manifest, no .fwconv-* staging dir
    assert json.loads(report.read_text())["status"] == "parity_failed"  # the report is still written

    r = invoke(*args, "--keep-failed")
    assert r.exit_code == 3, r.output
    assert "kept by --keep-failed" in r.output
    assert sorted(os.listdir(out_dir)) == ["cnn16.tflite", "cnn16.tflite.fwconv.json"]
    manifest = manifest_of(out)
    assert manifest["validation"]["status"] == "parity_failed"
    assert manifest["validation"]["outputs"]["output"]["passed"] is False
    # the kept artifact is the real (loadable, builtin-only) model, only not within 1e-30
    ref = run_torch(str(models_dir / "cnn.pt2"), {"image": fresh_image(5)})[0]
    got = run_litert(str(out), {"image": fresh_image(5)})["output"]
    assert 0 < scaled_error(ref, got) <= 1e-2

    # --force with a conversion that fails parity: the existing artifact is not replaced
    kept = {p: (out_dir / p).read_bytes() for p in os.listdir(out_dir)}
    r = invoke(*args, "--force")
    assert r.exit_code == 3, r.output
    assert {p: (out_dir / p).read_bytes() for p in os.listdir(out_dir)} == kept


# -- 2 + 8. int8 I/O with the manifest's numbers, calibrated on a folder -----------------------

CALIB_MIN, CALIB_MAX = -3.5, 4.0


@pytest.fixture(scope="module")
def int8_io(models_dir, tmp_path_factory):
    """cnn -> full-int8 .tflite with int8 I/O, calibrated on a FOLDER of 8 .npy + 8 .npz samples.
    The input range of the calibration set is planted: its minimum sits in one .npy sample and
    its maximum in one .npz sample, so the input scale shows that both kinds of file were read."""
    base = tmp_path_factory.mktemp("int8io")
    calib = base / "calib"
    calib.mkdir()
    rng = np.random.default_rng(1)
    for i in range(16):
        x = np.clip(rng.standard_normal((1, 3, 32, 32)), -3, 3).astype(np.float32)
        if i == 3:
            x[0, 1, 5, 5] = CALIB_MIN
        if i == 12:
            x[0, 2, 7, 9] = CALIB_MAX
        if i % 2:
            np.save(calib / f"s{i:02d}.npy", x)
        else:
            np.savez(calib / f"s{i:02d}.npz", image=x)
    out = base / "cnn_int8.tflite"
    r = invoke("torch2tflite", models_dir / "cnn.pt2", "--via", "onnx", "--quantize", "int8", "--int8-io",
               "--calibration", calib, "--inputs", models_dir / "cnn.npz", "--no-latency", "-o", out)
    return {"result": r, "artifact": out, "calibration": calib}


def test_int8_io_numbers_in_manifest_are_what_an_app_needs(int8_io, models_dir):
    from ai_edge_litert.interpreter import Interpreter

    assert int8_io["result"].exit_code == 0, int8_io["result"].output
    path = str(int8_io["artifact"])
    manifest = manifest_of(path)
    (inp,), (outp,) = manifest["inputs"], manifest["outputs"]
    assert inp["dtype"] == "int8" and outp["dtype"] == "int8" and inp["layout"] == "NCHW"
    in_scale, in_zp = inp["quantization"]["scale"], inp["quantization"]["zero_point"]
    out_scale, out_zp = outp["quantization"]["scale"], outp["quantization"]["zero_point"]

    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    in_detail, out_detail = interp.get_input_details()[0], interp.get_output_details()[0]
    assert in_detail["dtype"] == np.int8 and out_detail["dtype"] == np.int8
    assert list(in_detail["shape"]) == [1, 3, 32, 32]  # NCHW stays NCHW
    assert in_detail["quantization"] == (in_scale, in_zp)  # exactly the numbers the app is told
    assert out_detail["quantization"] == (out_scale, out_zp)

    # the app's side: quantize with the manifest's numbers, run, dequantize with them
    src = str(models_dir / "cnn.pt2")
    for seed in (11, 12, 13):
        x = fresh_image(seed)
        q = np.clip(np.round(x / in_scale) + in_zp, -128, 127).astype(np.int8)
        interp.set_tensor(in_detail["index"], q)
        interp.invoke()
        y = (interp.get_tensor(out_detail["index"]).astype(np.float32) - out_zp) * out_scale
        ref = run_torch(src, {"image": x})[0]
        assert y.shape == ref.shape
        assert cosine(ref, y) >= 0.98, (seed, cosine(ref, y))

    # fwconv's own validator does the same at the boundary, from the manifest
    r = invoke("validate", src, path, "--in-process", "--no-latency", "--samples", "2")
    assert r.exit_code == 0, r.output


def test_calibration_folder_of_npy_and_npz_samples(int8_io):
    assert int8_io["result"].exit_code == 0, int8_io["result"].output
    manifest = manifest_of(int8_io["artifact"])
    assert any("calibrated on 16 samples" in n for n in manifest["notes"]), manifest["notes"]
    assert manifest["ops"]["tensor_types"].get("INT8", 0) > 0
    # The int8 input range is the calibration data's min..max: the planted extremes from one
    # .npy file (min) and one .npz file (max) set it, so every file in the folder was used.
    q = manifest["inputs"][0]["quantization"]
    assert q["scale"] == pytest.approx((CALIB_MAX - CALIB_MIN) / 255, rel=1e-3)
    assert q["zero_point"] == round(-128 - CALIB_MIN / q["scale"])


# -- 3. the gate cache is invalidated by every input of a job ----------------------------------

@pytest.fixture
def gate_ws(tmp_path, models_dir):
    for f in ("mlp.pt2", "mlp.npz"):
        shutil.copy(models_dir / f, tmp_path / f)
    (tmp_path / "fwconv.toml").write_text(textwrap.dedent("""
        [gate]
        output_dir = "artifacts"

        [[model]]
        name = "mlp"
        source = "mlp.pt2"
        inputs = "mlp.npz"
        targets = ["onnx"]
        atol = 1e-4
        """))
    return tmp_path


def _gate(ws) -> tuple[bool, object]:
    """Run the gate; return (whether the job came from the cache, the result)."""
    r = invoke("gate", ws / "fwconv.toml")
    assert r.exit_code == 0, r.output
    assert "1/1 mlp:onnx: pass" in r.output, r.output
    return "mlp:onnx: pass (cached)" in r.output, r


def test_gate_cache_is_invalidated_by_source_inputs_settings_and_artifact(gate_ws):
    import onnx
    import torch
    from onnx import numpy_helper

    ws = gate_ws
    artifact = ws / "artifacts" / "mlp" / "mlp.onnx"
    assert _gate(ws)[0] is False
    assert _gate(ws)[0] is True
    os.utime(ws / "mlp.pt2", (1, 1))  # same bytes, new mtime: the cache hashes content
    assert _gate(ws)[0] is True

    # (a) the source's bytes: the same architecture, one weight changed
    module = torch.export.load(ws / "mlp.pt2").module()
    with torch.no_grad():
        next(p for n, p in module.named_parameters() if n.endswith("weight")).add_(0.01)
    torch.export.save(torch.export.export(module, (torch.zeros(2, 32),)), ws / "mlp.pt2")
    assert _gate(ws)[0] is False, "changed source bytes must run the job again"
    assert _gate(ws)[0] is True

    # (b) the inputs .npz
    np.savez(ws / "mlp.npz", x=np.random.default_rng(9).standard_normal((2, 32)).astype(np.float32))
    assert _gate(ws)[0] is False, "changed inputs must run the job again"
    assert _gate(ws)[0] is True

    # (c) a setting in the config
    cfg = ws / "fwconv.toml"
    cfg.write_text(cfg.read_text().replace("atol = 1e-4", "atol = 2e-4"))
    assert _gate(ws)[0] is False, "changed atol must run the job again"
    assert _gate(ws)[0] is True

    # (d) the artifact on disk
    model = onnx.load(artifact)
    t = max(model.graph.initializer, key=lambda t: t.ByteSize())
    arr = numpy_helper.to_array(t).copy()
    arr.flat[0] += 1.0
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    onnx.save(model, artifact)
    from fwconv.manifest import sha256_of

    tampered = sha256_of(str(artifact))
    assert _gate(ws)[0] is False, "a changed artifact must run the job again"
    assert sha256_of(str(artifact)) != tampered
    assert sha256_of(str(artifact)) == manifest_of(artifact)["sha256"]  # rebuilt, manifest matches
    assert _gate(ws)[0] is True


def _tools_by_target() -> list[tuple[str, str]]:
    """(target, tool) for every target the gate accepts: the tools of every edge on a simple path
    (at most 3 hops, as the planner allows) from a PyTorch source to it, read from the edges, and
    of the runtime that runs the target."""
    from fwconv.convert.edges import all_edges  # cheap: frameworks load inside each edge's run
    from fwconv.gate.config import TARGETS
    from fwconv.models.formats import target_format
    from fwconv.validators.runners import runner_classes

    def paths(node, target, seen):
        for e in all_edges():
            if e.src == node and e.dst not in seen:
                if e.dst == target:
                    yield [e]
                elif len(seen) < 3:
                    yield from ([e] + rest for rest in paths(e.dst, target, seen | {e.dst}))

    pairs = []
    for target in TARGETS:
        tools = {t for path in paths("torch", target, {"torch"}) for e in path for t in e.tools}
        tools |= {t for cls in runner_classes() if target_format(target) in cls.formats for t in cls.tools}
        pairs += [(target, tool) for tool in sorted(tools)]
    return pairs


@pytest.mark.parametrize("target,tool", _tools_by_target())
def test_gate_cache_key_changes_with_each_converter_version(target, tool, gate_ws, monkeypatch):
    """'A rerun skips jobs whose ... tool versions are unchanged': for every target the gate takes
    (pte included), a job's key must move with the version of every converter and runtime that
    can make or run its artifact. The installed version is simulated in-process; no job runs."""
    import importlib.metadata

    from fwconv.gate.cache import job_key
    from fwconv.gate.config import jobs_from_config

    (job,) = jobs_from_config(str(gate_ws / "fwconv.toml"))[0]
    job = {**job.to_dict(), "target": target}
    before = job_key(job, False)
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: "999.0" if dist == tool else real(dist))
    assert job_key(job, False) != before, f"upgrading {tool} keeps the cached {target} result"


# -- 4. onnx2tflite ----------------------------------------------------------------------------

def test_onnx2tflite_matches_onnxruntime(cnn_onnx, tmp_path):
    before = open(cnn_onnx, "rb").read()
    out = tmp_path / "cnn.tflite"
    r = invoke("onnx2tflite", cnn_onnx, "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    assert "verdict: PASS" in r.output and "via onnx -> tflite" in r.output
    assert open(cnn_onnx, "rb").read() == before  # the user's .onnx is not rewritten
    manifest = manifest_of(out)
    assert manifest["route"] == ["onnx", "tflite"] and manifest["ops"]["flex"] == []
    for seed in (21, 22):
        feed = {"image": fresh_image(seed, -4, 4)}
        ref = run_onnx(cnn_onnx, feed)
        lite = run_litert(str(out), feed)  # plain interpreter, NCHW input as in the ONNX model
        assert sorted(lite) == sorted(ref)
        for name, value in ref.items():
            assert lite[name].shape == value.shape
            assert scaled_error(value, lite[name]) <= FP32_LIMIT


# -- 5. savedmodel2torch -----------------------------------------------------------------------

def test_savedmodel2torch_from_keras_export(tmp_path):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(image)
    x = keras.layers.BatchNormalization()(x)
    logits = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(image, logits)
    saved = tmp_path / "sm"
    model.export(str(saved), verbose=False)

    out = tmp_path / "from_sm.pt"
    r = invoke("savedmodel2torch", saved, "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    assert "verdict: PASS" in r.output
    serving = tf.saved_model.load(str(saved)).signatures["serving_default"]
    for seed in (1, 2):
        feed = {"image": np.random.default_rng(seed).standard_normal((1, 16, 16, 3)).astype(np.float32)}
        ref = {k: v.numpy() for k, v in serving(image=tf.constant(feed["image"])).items()}
        got = run_torchscript(out, feed, by_name=True)  # module(image=...), NHWC as the SavedModel takes it
        assert sorted(got) == sorted(ref)  # the signature's output names
        for name, value in ref.items():
            assert got[name].shape == value.shape
            assert scaled_error(value, got[name]) <= FP32_LIMIT


# -- 6. fwconv convert --to tflite / savedmodel / torch ----------------------------------------

def test_convert_to_tflite_from_torch(models_dir, tmp_path):
    out = tmp_path / "mlp.tflite"
    r = invoke("convert", models_dir / "mlp.pt2", "--to", "tflite", "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    assert out.exists() and manifest_of(out)["route"][-1] == "tflite"
    x = np.random.default_rng(3).standard_normal((2, 32)).astype(np.float32)
    ref = run_torch(str(models_dir / "mlp.pt2"), {"x": x})[0]
    got = run_litert(str(out), {"x": x})
    assert scaled_error(ref, got["output"]) <= FP32_LIMIT


def test_convert_to_savedmodel_from_onnx(cnn_onnx, tmp_path):
    import tensorflow as tf

    sm = tmp_path / "cnn_sm"
    r = invoke("convert", cnn_onnx, "--to", "savedmodel", "-o", sm, "--no-latency")
    assert r.exit_code == 0, r.output
    assert "via onnx -> savedmodel" in r.output and (sm / "saved_model.pb").exists() and (sm / "fwconv.json").exists()
    feed = {"image": fresh_image(31, -4, 4)}
    ref = run_onnx(cnn_onnx, feed)["output"]
    got = tf.saved_model.load(str(sm)).signatures["serving_default"](image=tf.constant(feed["image"]))
    assert scaled_error(ref, got["output"].numpy()) <= FP32_LIMIT  # NCHW in, as the ONNX model


def test_convert_to_torch_from_onnx(mlp_onnx, tmp_path):
    pt = tmp_path / "mlp.pt"
    r = invoke("convert", mlp_onnx, "--to", "torch", "-o", pt, "--no-latency")
    assert r.exit_code == 0, r.output
    assert "via onnx -> torch" in r.output and "verdict: PASS" in r.output
    feed = {"x": np.random.default_rng(32).standard_normal((2, 32)).astype(np.float32)}
    ref = run_onnx(mlp_onnx, feed)["output"]
    assert scaled_error(ref, run_torchscript(pt, feed)["output"]) <= FP32_LIMIT


def test_onnx2torch_takes_what_torch2onnx_wrote(cnn_onnx, tmp_path):
    pt = tmp_path / "cnn.pt"
    r = invoke("onnx2torch", cnn_onnx, "-o", pt, "--no-latency")
    assert r.exit_code == 0, r.output
    feed = {"image": fresh_image(33, -4, 4)}
    assert scaled_error(run_onnx(cnn_onnx, feed)["output"], run_torchscript(pt, feed)["output"]) <= FP32_LIMIT


# -- 7. fwconv golden update -------------------------------------------------------------------

def test_golden_save_refuses_to_overwrite_and_update_refreshes(tmp_path, models_dir):
    import torch

    from fwconv.manifest import sha256_of

    for f in ("mlp.pt2", "mlp.npz"):
        shutil.copy(models_dir / f, tmp_path / f)
    cfg = tmp_path / "fwconv.toml"
    cfg.write_text('[gate]\ngolden_dir = "goldens"\n\n[[model]]\nname = "mlp"\nsource = "mlp.pt2"\n'
                   'inputs = "mlp.npz"\ntargets = ["onnx"]\n')
    golden = tmp_path / "goldens" / "mlp"
    r = invoke("golden", "save", cfg)
    assert r.exit_code == 0, r.output
    files = {f: (golden / f).read_bytes() for f in ("inputs.npz", "outputs.npz", "golden.json")}

    r = invoke("golden", "save", cfg)
    assert r.exit_code == 2 and "golden exists" in r.output and "fwconv golden update" in r.output
    assert {f: (golden / f).read_bytes() for f in files} == files

    module = torch.export.load(tmp_path / "mlp.pt2").module()
    with torch.no_grad():
        next(p for n, p in module.named_parameters() if n.endswith("bias")).add_(0.5)
    torch.export.save(torch.export.export(module, (torch.zeros(2, 32),)), tmp_path / "mlp.pt2")
    r = invoke("golden", "update", cfg)
    assert r.exit_code == 0, r.output
    assert "updated golden for mlp" in r.output
    assert (golden / "outputs.npz").read_bytes() != files["outputs.npz"]
    with np.load(golden / "inputs.npz") as d:
        inputs = {k: d[k] for k in d.files}
    with np.load(tmp_path / "mlp.npz") as d:
        assert inputs.keys() == {"x"} and np.array_equal(inputs["x"], d["x"])
    with np.load(golden / "outputs.npz") as d:
        (stored,) = [d[k] for k in d.files]
    new_ref = run_torch(str(tmp_path / "mlp.pt2"), inputs)[0]
    assert np.allclose(stored, new_ref, rtol=0, atol=1e-6)  # the new model's outputs
    info = json.loads((golden / "golden.json").read_text())
    assert info["source"]["sha256"] == sha256_of(str(tmp_path / "mlp.pt2"))


# -- 9. --no-validate --------------------------------------------------------------------------

def test_no_validate_writes_an_unvalidated_artifact(mlp_onnx, tmp_path):
    out = tmp_path / "mlp.pt"
    r = invoke("onnx2torch", mlp_onnx, "-o", out, "--no-validate")
    assert r.exit_code == 0, r.output
    assert out.exists() and "verdict" not in r.output and "PASS" not in r.output
    manifest = manifest_of(out)
    assert manifest["validation"] is None
    assert "validate" not in [s["stage"] for s in manifest["stages"]]
    # the skipped check, done here: the artifact is still a good one
    feed = {"x": np.random.default_rng(41).standard_normal((2, 32)).astype(np.float32)}
    assert scaled_error(run_onnx(mlp_onnx, feed)["output"], run_torchscript(out, feed)["output"]) <= FP32_LIMIT


# -- 10. the exporter fallback -----------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dependent(tmp_path_factory):
    path = tmp_path_factory.mktemp("dd") / "dd_model.py"
    path.write_text(DATA_DEPENDENT_FACTORY)
    return f"{path}:build"


def test_exporter_auto_falls_back_to_torchscript(data_dependent, tmp_path):
    out = tmp_path / "dd.onnx"
    # positive sample values: the traced branch is the `x.sum() > 0` one, which the check below feeds
    r = invoke("torch2onnx", data_dependent, "--input-shape", "2,8", "--input-range", "x:0.1,1", "-o", out,
               "--no-latency")
    assert r.exit_code == 0, r.output
    manifest = manifest_of(out)
    assert manifest["route"] == ["torch", "onnx"]
    assert manifest["extra"]["exporter"] == "torchscript"
    stages = {s["stage"]: s for s in manifest["stages"]}
    assert stages["export:dynamo"]["status"] == "failed" and stages["export:dynamo"]["detail"]
    assert stages["export:torchscript"]["status"] == "ok"
    assert any(n.startswith("exporter: torchscript (after dynamo") for n in manifest["notes"]), manifest["notes"]
    # the test's own parity check, on the traced branch (x.sum() > 0 for this input too)
    x = np.random.default_rng(2).uniform(0.1, 1, (2, 8)).astype(np.float32)
    ref = run_torch(data_dependent, {"x": x})[0]
    assert scaled_error(ref, run_onnx(out, {"x": x})["output"]) <= FP32_LIMIT


def test_exporter_choice_is_honoured(data_dependent, tmp_path):
    out = tmp_path / "ts.onnx"
    r = invoke("torch2onnx", data_dependent, "--input-shape", "2,8", "-o", out, "--no-latency",
               "--exporter", "torchscript")
    assert r.exit_code == 0, r.output
    manifest = manifest_of(out)
    assert manifest["extra"]["exporter"] == "torchscript"
    assert [s["stage"] for s in manifest["stages"] if s["stage"].startswith("export:")] == ["export:torchscript"]

    # dynamo only, on a model it cannot take: a converter failure (exit 1), nothing written
    out = tmp_path / "dyn.onnx"
    r = invoke("torch2onnx", data_dependent, "--input-shape", "2,8", "-o", out, "--no-latency", "--exporter", "dynamo")
    assert r.exit_code == 1, r.output
    assert "every ONNX exporter failed" in r.output and "dynamo" in r.output
    assert not out.exists() and leftovers(tmp_path) == []


# -- 11. --force on a SavedModel directory -----------------------------------------------------

def test_force_replaces_a_savedmodel_directory(models_dir, convert_cached, tmp_path):
    import tensorflow as tf

    from fwconv.manifest import sha256_of

    earlier = convert_cached(str(models_dir / "two_io.pt2"), "savedmodel").artifact
    out = tmp_path / "two_sm"
    shutil.copytree(earlier, out)  # a SavedModel written earlier by fwconv
    (out / "marker.txt").write_text("from the earlier run")
    onnx_model = convert_cached(str(models_dir / "two_io.pt2"), "onnx").artifact

    r = invoke("onnx2savedmodel", onnx_model, "-o", out, "--no-latency")
    assert r.exit_code == 2 and "already exists" in r.output and "--force" in r.output
    assert (out / "marker.txt").exists() and leftovers(tmp_path) == []

    r = invoke("onnx2savedmodel", onnx_model, "-o", out, "--no-latency", "--force")
    assert r.exit_code == 0, r.output
    assert not (out / "marker.txt").exists()  # replaced, not merged
    manifest = manifest_of(out)
    assert manifest["route"] == ["onnx", "savedmodel"] and manifest["sha256"] == sha256_of(str(out))
    assert leftovers(tmp_path) == []
    feed = {"image": np.random.default_rng(4).standard_normal((1, 3, 16, 16)).astype(np.float32),
            "meta": np.random.default_rng(5).standard_normal((1, 6)).astype(np.float32)}
    ref = run_onnx(onnx_model, feed)
    got = tf.saved_model.load(str(out)).signatures["serving_default"](**{k: tf.constant(v) for k, v in feed.items()})
    for name, value in ref.items():
        assert scaled_error(value, got[name].numpy()) <= FP32_LIMIT


# -- 12. the gate's exit code: parity failure wins ---------------------------------------------

def test_gate_exit_code_parity_beats_unsupported_and_error(tmp_path, models_dir):
    for f in ("cnn.pt2", "cnn.npz"):
        shutil.copy(models_dir / f, tmp_path / f)
    (tmp_path / "det.py").write_text(FLEX_FACTORY)
    # 'tight': fp16 weights never reproduce fp32 outputs bit for bit, and atol = rtol = 0
    # (explicit tolerances govern on their own), so it fails parity (3). 'det' needs
    # FlexMatrixDeterminant (5). 'missing' has no source file: an error (1).
    (tmp_path / "fwconv.toml").write_text(textwrap.dedent("""
        [gate]
        output_dir = "artifacts"

        [[model]]
        name = "tight"
        source = "cnn.pt2"
        inputs = "cnn.npz"
        targets = ["tflite"]
        atol = 0.0
        rtol = 0.0
        [model.target.tflite]
        via = "onnx"
        quantize = "fp16"

        [[model]]
        name = "det"
        source = "det.py:build"
        input_shape = ["2,3,3"]
        targets = ["tflite"]
        [model.target.tflite]
        via = "onnx"

        [[model]]
        name = "missing"
        source = "missing.pt2"
        input_shape = ["1,4"]
        targets = ["onnx"]
        """))
    r = invoke("gate", tmp_path / "fwconv.toml", "--jobs", "2", "--json", tmp_path / "gate.json")
    data = json.loads((tmp_path / "gate.json").read_text())
    status = {res["id"]: res["status"] for res in data["results"]}
    assert status == {"tight:tflite": "parity_failed", "det:tflite": "unsupported_op", "missing:onnx": "error"}, r.output
    assert r.exit_code == 3, r.output
    assert data["exit_code"] == 3 and "exit code 3" in r.output
    assert "FlexMatrixDeterminant" in r.output


# -- torch2onnx: the README's route (torch.onnx.export) ----------------------------------------

@pytest.fixture(scope="module")
def torch2onnx_default(models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("t2o") / "mlp.onnx"
    r = invoke("torch2onnx", models_dir / "mlp.pt2", "-o", out)  # defaults: validated, latency timed
    return r, out


def test_torch2onnx_defaults_validate_and_time(torch2onnx_default, models_dir):
    r, out = torch2onnx_default
    assert r.exit_code == 0, r.output
    assert "verdict: PASS" in r.output and "latency ratio" in r.output
    manifest = manifest_of(out)
    assert manifest["validation"]["status"] == "pass"
    x = np.random.default_rng(6).standard_normal((2, 32)).astype(np.float32)
    assert scaled_error(run_torch(str(models_dir / "mlp.pt2"), {"x": x})[0], run_onnx(out, {"x": x})["output"]) <= FP32_LIMIT


def test_torch2onnx_uses_torch_onnx_export(torch2onnx_default):
    r, out = torch2onnx_default
    assert r.exit_code == 0, r.output
    manifest = manifest_of(out)
    tried = [t["route"] for t in manifest["extra"].get("routes", [])]
    assert not [t for t in tried if "tflite" in t], tried  # deterministic: no detour through TFLite tried
    assert manifest["route"] == ["torch", "onnx"]
    assert manifest["extra"]["exporter"] in ("dynamo", "torchscript")
