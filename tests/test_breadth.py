"""Routes on third-party layers and models: real Keras layers (GlobalMaxPooling, exact GELU),
TensorFlow's own TFLite converter (fused GELU), a transformers T5 encoder, and what a PyTorch
user gets back (a tensor or a tuple in the source's order, called positionally or by keyword).

Each test runs both frameworks itself and compares; fwconv's own verdict is not the evidence.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import invoke, scaled_error

pytestmark = pytest.mark.slow
LIMIT = 1e-4


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory):
    """Keras models with the layers that stopped real TF models, and TF's own .tflite of the GELU one."""
    import keras
    import tensorflow as tf

    out = tmp_path_factory.mktemp("breadth")
    keras.utils.set_random_seed(0)
    img = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(img)
    gmp = keras.Model(img, keras.layers.Dense(4)(keras.layers.GlobalMaxPooling2D()(x)))
    tokens = keras.Input((6, 12), name="tokens")
    gelu = keras.Model(tokens, keras.layers.Dense(8)(keras.layers.Dense(16, activation="gelu")(tokens)))
    meta = keras.Input((6,), name="meta")
    z = keras.layers.Concatenate()([keras.layers.GlobalMaxPooling2D()(x), keras.layers.Dense(4)(meta)])
    multi = keras.Model([img, meta], [keras.layers.Dense(5, name="logits")(z), keras.layers.Dense(2, name="aux")(z)])
    paths = {}
    for name, model in (("gmp", gmp), ("gelu", gelu), ("multi", multi)):
        paths[name] = out / f"{name}.keras"
        model.save(paths[name])
        model.export(str(out / f"{name}_sm"), verbose=False)
        paths[f"{name}_sm"] = out / f"{name}_sm"
    paths["gelu_tflite"] = out / "gelu.tflite"
    paths["gelu_tflite"].write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(paths["gelu_sm"])).convert())
    return {"paths": paths, "models": {"gmp": gmp, "gelu": gelu, "multi": multi}}


def keras_to_torch(tf_models, name: str, tmp_path):
    """`fwconv keras2torch` on one of the module's models; the path of the saved module."""
    pt = tmp_path / f"{name}.pt"
    r = invoke("keras2torch", tf_models["paths"][name], "-o", pt, "--no-latency")
    assert r.exit_code == 0, r.output
    return pt


def feed_for(model, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal([1 if d is None else d for d in t.shape]).astype(np.float32)
            for t in model.inputs}


def load_torch(path):
    import torch

    return torch.jit.load(str(path))


def call(module, feed: dict[str, np.ndarray], *, keyword: bool):
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
    with torch.no_grad():
        return module(**tensors) if keyword else module(*tensors.values())


def test_exact_gelu_from_keras_is_valid_onnx_and_torch(tf_models, tmp_path):
    """Keras' default GELU is exact (erf-based); tf2onnx alone writes an `Erfc` node, not an ONNX op."""
    import keras
    import onnx
    import onnxruntime as ort

    assert keras.activations.gelu.__defaults__ == (False,)  # approximate=False: the exact form
    model, path = tf_models["models"]["gelu"], tf_models["paths"]["gelu"]
    onnx_path, pt = tmp_path / "gelu.onnx", tmp_path / "gelu.pt"
    assert invoke("keras2onnx", path, "-o", onnx_path, "--no-latency").exit_code == 0
    graph = onnx.load(str(onnx_path))
    onnx.checker.check_model(graph)
    assert "Erfc" not in {n.op_type for n in graph.graph.node} and "Erf" in {n.op_type for n in graph.graph.node}
    r = invoke("keras2torch", path, "-o", pt, "--no-latency")
    assert r.exit_code == 0, r.output
    feed = feed_for(model, 11)
    ref = np.asarray(model(feed["tokens"]))
    session = ort.InferenceSession(str(onnx_path))
    assert scaled_error(ref, session.run(None, feed)[0]) <= LIMIT
    module = load_torch(pt)
    for keyword in (False, True):
        got = call(module, feed, keyword=keyword)
        assert not isinstance(got, (dict, tuple)), type(got)  # one output: a tensor
        assert scaled_error(ref, got.numpy()) <= LIMIT


def test_tflite_fused_gelu_converts(tf_models, tmp_path):
    """TF's TFLite converter fuses GELU into one `GELU` op, which tf2onnx's TFLite reader lacks."""
    from ai_edge_litert.interpreter import Interpreter

    tfl = tf_models["paths"]["gelu_tflite"]
    interp = Interpreter(model_path=str(tfl))
    assert "GELU" in {d["op_name"] for d in interp._get_ops_details()}
    pt = tmp_path / "gelu_from_tflite.pt"
    r = invoke("tflite2torch", tfl, "-o", pt, "--no-latency")
    assert r.exit_code == 0, r.output
    feed = feed_for(tf_models["models"]["gelu"], 12)
    lite = interp.get_signature_runner("serving_default")(**feed)
    got = call(load_torch(pt), feed, keyword=True)
    assert scaled_error(next(iter(lite.values())), got.numpy()) <= LIMIT


def test_global_max_pooling_back_to_torch(tf_models, tmp_path):
    model = tf_models["models"]["gmp"]
    pt = keras_to_torch(tf_models, "gmp", tmp_path)
    feed = feed_for(model, 13)
    ref = np.asarray(model(feed["image"]))
    module = load_torch(pt)
    for keyword in (False, True):
        got = call(module, feed, keyword=keyword)
        assert got.shape == ref.shape and scaled_error(ref, got.numpy()) <= LIMIT


def test_multi_output_savedmodel_gives_a_tuple_in_source_order(tf_models, tmp_path):
    """Several outputs: a tuple in the source's order, names on the module and in the manifest;
    `--outputs dict` gives a dict by name instead."""
    import tensorflow as tf

    sm = tf_models["paths"]["multi_sm"]
    signature = tf.saved_model.load(str(sm)).signatures["serving_default"]
    feed = feed_for(tf_models["models"]["multi"], 14)
    ref = {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in feed.items()}).items()}
    pt, pt_dict = tmp_path / "multi.pt", tmp_path / "multi_dict.pt"
    r = invoke("savedmodel2torch", sm, "-o", pt, "--no-latency")
    assert r.exit_code == 0, r.output
    module = load_torch(pt)
    names = list(module.output_names)
    manifest = json.loads((tmp_path / "multi.pt.fwconv.json").read_text())
    assert manifest["extra"]["output_names"] == names and manifest["extra"]["output_structure"] == "tuple"
    assert sorted(names) == sorted(ref)
    source_order = [o["source"] for o in manifest["extra"]["interface"]["outputs"]]
    assert source_order == names
    for keyword in (False, True):
        got = call(module, feed, keyword=keyword)
        assert isinstance(got, tuple) and len(got) == 2
        for name, tensor in zip(names, got, strict=True):
            assert scaled_error(ref[name], tensor.numpy()) <= LIMIT, name
    r = invoke("savedmodel2torch", sm, "-o", pt_dict, "--outputs", "dict", "--no-latency")
    assert r.exit_code == 0, r.output
    got = call(load_torch(pt_dict), feed, keyword=True)
    assert isinstance(got, dict) and sorted(got) == sorted(ref)


def test_keras_multi_output_tuple_follows_model_outputs(tf_models, tmp_path):
    """A Keras model with a list of outputs: the tuple follows model.outputs' order."""
    model = tf_models["models"]["multi"]
    pt = keras_to_torch(tf_models, "multi", tmp_path)
    feed = feed_for(model, 15)
    ref = [np.asarray(o) for o in model([feed["image"], feed["meta"]])]
    got = call(load_torch(pt), feed, keyword=True)
    assert isinstance(got, tuple) and [t.shape[-1] for t in got] == [r.shape[-1] for r in ref]  # logits (5), aux (2)
    for a, b in zip(ref, got, strict=True):
        assert scaled_error(a, b.numpy()) <= LIMIT


def test_t5_encoder_pt2_reaches_onnx(tmp_path):
    """A T5 encoder .pt2: the dynamo exporter fails to decompose it; the TorchScript exporter on
    the ExportedProgram's module (which refuses train()) must take over."""
    import onnxruntime as ort
    import torch
    import transformers

    cfg = transformers.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    torch.manual_seed(0)
    encoder = transformers.T5EncoderModel(cfg).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids):
            return self.encoder(input_ids=input_ids).last_hidden_state

    ids = torch.randint(0, 100, (1, 12))
    src, out = tmp_path / "t5.pt2", tmp_path / "t5.onnx"
    torch.export.save(torch.export.export(Encoder(), (ids,)), src)
    r = invoke("torch2onnx", src, "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "t5.onnx.fwconv.json").read_text())
    assert manifest["extra"]["exporter"] == "torchscript"
    fresh = torch.randint(0, 100, (1, 12))
    with torch.no_grad():
        ref = torch.export.load(str(src)).module()(fresh).numpy()
    got = ort.InferenceSession(str(out)).run(None, {"input_ids": fresh.numpy()})[0]
    assert scaled_error(ref, got) <= LIMIT


def test_calibration_stacked_on_the_batch_axis(models_dir, tmp_path, sample):
    """[N, 3, 32, 32] for a [1, 3, 32, 32] input (onnx2tf's and TF's convention) calibrates like
    [N, 1, 3, 32, 32]: both give the same quantization parameters on every tensor."""
    from ai_edge_litert.interpreter import Interpreter

    image = sample("cnn")["image"]
    rng = np.random.default_rng(0)
    stack = rng.standard_normal((16,) + image.shape[1:]).astype(np.float32)
    np.savez(tmp_path / "batch.npz", image=stack)
    np.savez(tmp_path / "axis.npz", image=stack[:, None])
    params = []
    for name in ("batch", "axis"):
        out = tmp_path / f"{name}.tflite"
        r = invoke("torch2tflite", models_dir / "cnn.pt2", "--via", "onnx", "--quantize", "int8",
                   "--calibration", tmp_path / f"{name}.npz", "-o", out, "--no-latency")
        assert r.exit_code == 0, r.output
        details = Interpreter(model_path=str(out)).get_tensor_details()
        params.append(sorted((round(float(d["quantization"][0]), 9), int(d["quantization"][1])) for d in details))
    assert any(scale for scale, _ in params[0]) and params[0] == params[1]
    np.savez(tmp_path / "odd.npz", image=stack[:, :2])  # neither layout: one clear line, exit 2
    r = invoke("torch2tflite", models_dir / "cnn.pt2", "--via", "onnx", "--quantize", "int8",
               "--calibration", tmp_path / "odd.npz", "-o", tmp_path / "odd.tflite", "--no-latency")
    assert r.exit_code == 2 and "stacked on the batch axis" in r.output


def test_tflite_output_tensor_order_follows_the_source(models_dir, tmp_path):
    """Index-based mobile code reads get_output_details()[i]: on every route it must be the
    source's i-th output (two_io returns a [1, 8, 16, 16] feature map, then [1, 5] logits)."""
    from ai_edge_litert.interpreter import Interpreter

    from conftest import run_torch

    src = models_dir / "two_io.pt2"
    with np.load(models_dir / "two_io.npz") as data:
        feed = {k: data[k] for k in data.files}
    ref = run_torch(str(src), feed)
    for via in ("onnx", "litert"):
        out = tmp_path / f"two_{via}.tflite"
        r = invoke("torch2tflite", src, "--via", via, "-o", out, "--no-latency")
        assert r.exit_code == 0, r.output
        interp = Interpreter(model_path=str(out))
        interp.allocate_tensors()
        for i, detail in enumerate(interp.get_input_details()):
            interp.set_tensor(detail["index"], list(feed.values())[i])
        interp.invoke()
        got = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
        assert [list(g.shape) for g in got] == [list(r_.shape) for r_ in ref], via
        for a, b in zip(ref, got, strict=True):
            assert scaled_error(a, b) <= LIMIT, via
