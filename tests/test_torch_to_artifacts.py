"""PyTorch -> TFLite / ONNX / SavedModel on the fixture models and real third-party architectures.

Each test runs the source in PyTorch and the artifact in its own runtime (LiteRT, ONNX Runtime,
TensorFlow) itself, and checks outputs, names, shapes and the op set.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from conftest import REPO, run_litert, run_torch, scaled_error

pytestmark = pytest.mark.slow

FIXTURES = ["cnn", "mlp", "transformer", "two_io", "tokens", "gru"]
FP32_LIMIT = 1e-4


def _check_manifest(result, source: str, feed: dict[str, np.ndarray], torch_outs: list[np.ndarray]):
    path = result.artifact + ".fwconv.json" if os.path.isfile(result.artifact) else os.path.join(result.artifact, "fwconv.json")
    with open(path) as f:
        manifest = json.load(f)
    assert manifest["schema_version"] == 1
    assert [i["name"] for i in manifest["inputs"]] == list(feed)
    assert [i["shape"] for i in manifest["inputs"]] == [list(v.shape) for v in feed.values()]
    assert [o["shape"] for o in manifest["outputs"]] == [list(o.shape) for o in torch_outs]
    if os.path.isfile(source):
        with open(source, "rb") as f:
            assert manifest["source"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert manifest["tools"]["torch"] and manifest["size_bytes"] > 0
    assert all(s["seconds"] >= 0 for s in manifest["stages"])
    return manifest


@pytest.mark.parametrize("kind, via", [("pt", "onnx"), ("pt2", "onnx"), ("pt2", "litert")])
@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_to_tflite_matches_torch(name, kind, via, models_dir, sample, convert_cached):
    """Both routes (ONNX+onnx2tf, litert-torch) give builtin-only artifacts that match PyTorch."""
    source = str(models_dir / f"{name}.{kind}")
    feed = sample(name)
    result = convert_cached(source, "tflite", inputs=str(models_dir / f"{name}.npz"), via=via)
    assert result.validation.parity_passed
    torch_outs = run_torch(source, feed)
    lite = run_litert(result.artifact, {k: v.astype(np.int32) if v.dtype == np.int64 and via == "litert" else v
                                        for k, v in feed.items()})  # plain interpreter: refuses any Flex op
    manifest = _check_manifest(result, source, feed, torch_outs)
    out_names = [o["name"] for o in manifest["outputs"]]
    assert sorted(lite) == sorted(out_names)
    for name_, ref in zip(out_names, torch_outs, strict=True):
        assert lite[name_].shape == ref.shape  # NCHW stays NCHW
        assert scaled_error(ref, lite[name_]) <= FP32_LIMIT
    assert manifest["ops"]["flex"] == [] and manifest["ops"]["custom"] == []
    assert manifest["route"] == (["torch", "onnx", "tflite"] if via == "onnx" else ["torch", "tflite"])


@pytest.mark.parametrize("name", ["two_io", "transformer"])
def test_fixture_to_onnx_and_savedmodel(name, models_dir, sample, convert_cached):
    import onnxruntime as ort
    import tensorflow as tf

    source = str(models_dir / f"{name}.pt2")
    feed = sample(name)
    torch_outs = run_torch(source, feed)
    onnx_result = convert_cached(source, "onnx", inputs=str(models_dir / f"{name}.npz"))
    session = ort.InferenceSession(onnx_result.artifact, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(feed)
    for ref, out in zip(torch_outs, session.run(None, feed), strict=True):
        assert scaled_error(ref, out) <= FP32_LIMIT
    _check_manifest(onnx_result, source, feed, torch_outs)

    sm_result = convert_cached(source, "savedmodel", inputs=str(models_dir / f"{name}.npz"))
    fn = tf.saved_model.load(sm_result.artifact).signatures["serving_default"]
    outs = fn(**{k: tf.constant(v) for k, v in feed.items()})
    manifest = _check_manifest(sm_result, source, feed, torch_outs)
    for spec, ref in zip(manifest["outputs"], torch_outs, strict=True):
        assert outs[spec["name"]].shape == ref.shape
        assert scaled_error(ref, outs[spec["name"]].numpy()) <= FP32_LIMIT


def test_fp16_tflite_is_smaller_and_close(models_dir, sample, convert_cached):
    source = str(models_dir / "cnn.pt2")
    feed = sample("cnn")
    fp32 = convert_cached(source, "tflite", inputs=str(models_dir / "cnn.npz"), via="onnx")
    fp16 = convert_cached(source, "tflite", inputs=str(models_dir / "cnn.npz"), fp16=True)
    assert os.path.getsize(fp16.artifact) < 0.75 * os.path.getsize(fp32.artifact)
    ref = run_torch(source, feed)[0]
    out = next(iter(run_litert(fp16.artifact, feed).values()))
    assert scaled_error(ref, out) <= 1e-2
    assert fp16.validation.outputs[0].tolerance["precision"] == "fp16"


def test_nhwc_layout_is_opt_in_and_recorded(models_dir, sample, convert_cached):
    source = str(models_dir / "two_io.pt2")
    feed = sample("two_io")
    result = convert_cached(source, "tflite", inputs=str(models_dir / "two_io.npz"), layout="nhwc")
    nhwc_feed = {"image": np.ascontiguousarray(feed["image"].transpose(0, 2, 3, 1)), "meta": feed["meta"]}
    lite = run_litert(result.artifact, nhwc_feed)
    fmap, scores = run_torch(source, feed)
    assert lite["output_0"].shape == fmap.transpose(0, 2, 3, 1).shape
    assert scaled_error(fmap.transpose(0, 2, 3, 1), lite["output_0"]) <= FP32_LIMIT
    assert scaled_error(scores, lite["output_1"]) <= FP32_LIMIT
    interface = result.manifest.extra["interface"]
    assert interface["inputs"][0]["transpose"] == [0, 2, 3, 1]
    assert [i.layout for i in result.manifest.inputs] == ["NHWC", None]


THIRDPARTY = {
    "bert": (["input_ids:1,16"], ["input_ids:int64"]),
    "vit": (["pixel_values:1,3,32,32"], []),
    "resnet": (["pixel_values:1,3,32,32"], []),
    "convnext": (["pixel_values:1,3,32,32"], []),
}


@pytest.mark.parametrize("via", ["onnx", "litert"])
@pytest.mark.parametrize("arch", sorted(THIRDPARTY))
def test_thirdparty_architecture_to_tflite(arch, via, convert_cached):
    """transformers models (random weights, no download) convert to builtin-only .tflite that matches."""
    pytest.importorskip("transformers")
    from fwconv.validators.inputs import synthetic_inputs

    shapes, dtypes = THIRDPARTY[arch]
    source = os.path.join(REPO, "fixtures", f"thirdparty.py:build_{arch}")
    result = convert_cached(source, "tflite", input_shape=tuple(shapes), input_dtype=tuple(dtypes), via=via)
    assert result.validation.parity_passed, result.validation.failures()
    specs = [s for s in result.manifest.inputs]
    feed = synthetic_inputs(specs, seed=7, int_bounds={"input_ids": 1000})  # a sample fwconv never saw
    torch_outs = run_torch(source, feed)
    lite = run_litert(result.artifact, {k: v.astype(result.manifest.inputs[i].dtype)
                                        for i, (k, v) in enumerate(feed.items())})
    for spec, ref in zip(result.manifest.outputs, torch_outs, strict=True):
        assert lite[spec.name].shape == ref.shape
        assert scaled_error(ref, lite[spec.name]) <= FP32_LIMIT
    assert result.manifest.ops["flex"] == []
