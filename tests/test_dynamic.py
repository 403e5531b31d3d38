"""Dynamic shapes: artifacts that take a variable batch / sequence length, each run in its own
runtime at several sizes inside the test against PyTorch; a frozen artifact must fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, invoke, scaled_error

CNN = f"{REPO}/fixtures/models.py:build_cnn"
TRANSFORMER = f"{REPO}/fixtures/models.py:build_transformer"
AUDIO_FACTORY = """
import torch

class Audio(torch.nn.Module):
    '''A 1-D conv net over a waveform of any length: [N, 1, L] -> [N, 8, L].'''
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 5, padding=2), torch.nn.ReLU(),
                                       torch.nn.Conv1d(8, 8, 3, padding=1))
    def forward(self, wave):
        return self.net(wave)

def build():
    return Audio().eval()
"""


def _torch(factory: str, x: np.ndarray) -> np.ndarray:
    from conftest import run_torch

    return run_torch(factory, {"x": x})[0]


def _onnx(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _litert(path, x: np.ndarray) -> np.ndarray:
    """As an app does: resize the input, allocate, run."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    detail = interp.get_input_details()[0]
    interp.resize_tensor_input(detail["index"], list(x.shape), strict=True)
    interp.allocate_tensors()
    interp.set_tensor(detail["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _convert(tmp_path, factory: str, target: str, shape: str, *dynamic: str) -> tuple:
    suffix = {"onnx": ".onnx", "tflite": ".tflite", "pte": ".pte"}[target]
    out = tmp_path / f"model{suffix}"
    args = [a for d in dynamic for a in ("--dynamic", d)]
    result = invoke("convert", factory, "--to", target, "--input-shape", shape, *args, "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    return out, json.loads((tmp_path / f"model{suffix}.fwconv.json").read_text()), result.output


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_cnn_dynamic_batch(tmp_path, target):
    out, manifest, text = _convert(tmp_path, CNN, target, "1,3,32,32", "image:0=batch:1..8")
    assert manifest["extra"]["dynamic"] == [{"input": "image", "dim": 0, "label": "batch", "min": 1, "max": 8}]
    assert [s["inputs"]["image"][0] for s in manifest["validation"]["shapes"]] == [5, 8]
    run = _onnx if target == "onnx" else _litert
    for batch in (1, 3, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        assert scaled_error(_torch(CNN, x), run(out, x)) < 1e-4, batch
    if target == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        assert list(Interpreter(model_path=str(out)).get_input_details()[0]["shape_signature"]) == [-1, 3, 32, 32]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_transformer_dynamic_sequence(tmp_path, target):
    """Sequence lengths 2..24, including 13 (no common tile size divides it)."""
    out, manifest, _ = _convert(tmp_path, TRANSFORMER, target, "1,8,32", "tokens:1=seq:2..24")
    assert all(s["passed"] for s in manifest["validation"]["shapes"])
    run = _onnx if target == "onnx" else _litert
    for length in (2, 13, 24):
        x = np.random.default_rng(length).standard_normal((1, length, 32)).astype(np.float32)
        assert scaled_error(_torch(TRANSFORMER, x), run(out, x)) < 1e-4, length


@pytest.mark.slow
def test_bert_sequence_and_batch_to_onnx(tmp_path):
    """A transformers BERT (random weights), batch and sequence both variable, in ONNX Runtime."""
    import torch

    from fixtures.thirdparty import build_bert

    factory = f"{REPO}/fixtures/thirdparty.py:build_bert"
    out = tmp_path / "bert.onnx"
    result = invoke("torch2onnx", factory, "--input-shape", "1,16", "--input-dtype", "int64", "--dynamic", "batch",
                    "--dynamic", "input_ids:1=seq:4..32", "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    model = build_bert()
    for batch, length in ((1, 4), (3, 13), (2, 32)):
        ids = np.random.default_rng(length).integers(0, 1000, (batch, length)).astype(np.int64)
        with torch.no_grad():
            want = model(torch.from_numpy(ids))[0].numpy()
        assert scaled_error(want, _onnx(out, ids)) < 1e-4, (batch, length)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_audio_1d_dynamic_length(tmp_path, target):
    factory = tmp_path / "audio.py"
    factory.write_text(AUDIO_FACTORY)
    out, manifest, _ = _convert(tmp_path, f"{factory}:build", target, "1,1,400", "wave:2=samples:100..1000")
    run = _onnx if target == "onnx" else _litert
    for length in (100, 401, 1000):
        x = np.random.default_rng(length).standard_normal((1, 1, length)).astype(np.float32)
        got = run(out, x)
        assert got.shape == (1, 8, length)
        assert scaled_error(_torch(f"{factory}:build", x), got) < 1e-4, length


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_a_frozen_artifact_fails_at_another_size(tmp_path, target):
    """Converted without --dynamic (frozen at batch 1), then validated as if it were dynamic:
    exit 3, naming the size it cannot take."""
    suffix = {"onnx": ".onnx", "tflite": ".tflite"}[target]
    frozen = tmp_path / f"frozen{suffix}"
    assert invoke("convert", CNN, "--to", target, "--input-shape", "1,3,32,32", "-o", frozen,
                  "--no-latency").exit_code == 0
    result = invoke("validate", CNN, frozen, "--input-shape", "1,3,32,32", "--dynamic", "batch", "--no-latency",
                    "--json", tmp_path / "v.json")
    assert result.exit_code == 3, result.output
    report = json.loads((tmp_path / "v.json").read_text())
    failed = [s for s in report["shapes"] if not s["passed"]]
    assert failed and list(failed[0]["inputs"].values())[0][0] == 5
    assert "[5, 3, 32, 32]" in result.output


@pytest.mark.slow
def test_pt2_dims_are_honoured_and_static_pt2_refused(tmp_path):
    import torch

    from fixtures.models import build_cnn

    module, x = build_cnn().eval(), torch.randn(2, 3, 32, 32)
    dynamic = tmp_path / "dyn.pt2"
    torch.export.save(torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("n", max=6)},)), dynamic)
    out = tmp_path / "dyn.onnx"
    result = invoke("torch2onnx", dynamic, "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "dyn.onnx.fwconv.json").read_text())
    assert manifest["extra"]["dynamic"][0]["max"] == 6 and manifest["validation"]["shapes"]
    assert _onnx(out, np.zeros((4, 3, 32, 32), np.float32)).shape == (4, 10)
    static = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(module, (x,)), static)
    refused = invoke("torch2onnx", static, "--dynamic", "batch", "-o", tmp_path / "s.onnx")
    assert refused.exit_code == 2 and "exported with static shapes" in refused.output
    wider = invoke("torch2onnx", dynamic, "--dynamic", "batch:1..64", "-o", tmp_path / "w.onnx")
    assert wider.exit_code == 2 and "exported for sizes" in wider.output and not (tmp_path / "w.onnx").exists()
    # an ONNX input dim that is not symbolic cannot be made variable either: its graph was built for it
    import onnx

    name = onnx.load(str(out)).graph.input[0].name
    fixed = invoke("onnx2tflite", out, "--dynamic", f"{name}:1", "-o", tmp_path / "f.tflite")
    assert fixed.exit_code == 2 and "fixes that size" in fixed.output and not (tmp_path / "f.tflite").exists()


CONV_STACK = """
import torch

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval()
"""


@pytest.mark.slow
def test_litert_route_keeps_a_conv_stacks_batch_when_asked_and_says_when_it_cannot(tmp_path):
    """`--via litert` hands the Dims to litert-torch: a plain conv stack keeps its batch (LiteRT
    resized to 1, 3, 8 against PyTorch); an MLP fails in its lowering, in one line. `--via auto`
    does not try it (the ONNX route keeps dims far more often)."""
    factory = tmp_path / "convs.py"
    factory.write_text(CONV_STACK)
    out = tmp_path / "convs.tflite"
    result = invoke("torch2tflite", f"{factory}:build", "--input-shape", "2,3,16,16", "--dynamic", "batch:1..8",
                    "--via", "litert", "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "convs.tflite.fwconv.json").read_text())
    assert manifest["route"] == ["torch", "tflite"] and all(s["passed"] for s in manifest["validation"]["shapes"])
    for batch in (1, 3, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
        assert scaled_error(_torch(f"{factory}:build", x), _litert(out, x)) < 1e-4, batch
    mlp = invoke("torch2tflite", f"{REPO}/fixtures/models.py:build_mlp", "--input-shape", "2,32", "--dynamic", "batch",
                 "--via", "litert", "-o", tmp_path / "mlp.tflite")
    assert mlp.exit_code != 0 and "litert-torch failed" in mlp.output and len(mlp.output.strip().splitlines()) == 1
    assert not (tmp_path / "mlp.tflite").exists()


def test_routes_that_cannot_keep_dims_refuse_clearly(tmp_path):
    bad = invoke("torch2onnx", CNN, "--input-shape", "1,3,32,32", "--dynamic", "image:0:8..2")
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    missing = invoke("torch2onnx", CNN, "--input-shape", "1,3,32,32", "--dynamic", "nope:0", "-o", tmp_path / "m.onnx")
    assert missing.exit_code == 2 and "nope" in missing.output


TWO_INPUTS = """
import torch

class Pair(torch.nn.Module):
    def forward(self, a, b):
        return a.sum(1, keepdim=True) + b.sum(1, keepdim=True)

def build():
    return Pair().eval()
"""

SMALL_BATCH_ONLY = """
import torch

class SmallBatch(torch.nn.Module):
    # eager PyTorch refuses a batch over 4; its trace (TorchScript exporter) does not
    def forward(self, x):
        if x.shape[0] > 4:
            raise ValueError("this model takes a batch of at most 4")
        return x * 2

def build():
    return SmallBatch().eval()
"""


def _refused_before_writing(tmp_path, result, words: str) -> None:
    assert result.exit_code == 2 and words in result.output and len(result.output.strip().splitlines()) == 1, \
        result.output
    assert not list(tmp_path.glob("*.onnx*"))


def test_contradictions_are_refused_before_anything_converts(tmp_path):
    """Each would otherwise be silently half-honoured (a word dropped, an example outside its own
    range validated, a label promising equal sizes the sample breaks): exit 2, one line, nothing written."""
    out = tmp_path / "x.onnx"
    outside = invoke("torch2onnx", CNN, "--input-shape", "8,3,32,32", "--dynamic", "batch:1..4", "-o", out)
    _refused_before_writing(tmp_path, outside, "the example's size 8")
    twice = invoke("torch2onnx", CNN, "--input-shape", "2,3,32,32", "--dynamic", "batch", "--dynamic", "image:0=b2:2..8",
                   "-o", out)
    _refused_before_writing(tmp_path, twice, "twice")
    factory = tmp_path / "pair.py"
    factory.write_text(TWO_INPUTS)
    tied = invoke("torch2onnx", f"{factory}:build", "--input-shape", "a:1,3", "--input-shape", "b:1,5",
                  "--dynamic", "a:1=seq:1..8", "--dynamic", "b:1=seq:1..8", "-o", out)
    _refused_before_writing(tmp_path, tied, "ties a:1 (size 3) to b:1 (size 5)")
    from fwconv.convert.options import ConvertOptions  # the API takes the same words, one or several
    from fwconv.errors import InputError

    assert ConvertOptions(dynamic="batch").dynamic == ConvertOptions(dynamic=["batch"]).dynamic
    with pytest.raises(InputError, match="each entry is a string"):
        ConvertOptions(dynamic=[1])


def test_a_size_the_source_itself_cannot_run_is_bad_input(tmp_path):
    """The reference failing at a swept size is not the artifact's fault: exit 2 naming the size,
    not exit 3 after the repairs."""
    factory = tmp_path / "small.py"
    factory.write_text(SMALL_BATCH_ONLY)
    result = invoke("torch2onnx", f"{factory}:build", "--input-shape", "2,4", "--dynamic", "batch:1..8",
                    "--exporter", "torchscript", "-o", tmp_path / "s.onnx", "--no-latency")
    assert result.exit_code == 2 and "the source itself does not run at" in result.output, result.output
    assert not (tmp_path / "s.onnx").exists() and "repair" not in result.output


def test_each_size_gets_a_p50_per_side(tmp_path):
    out = tmp_path / "cnn.onnx"
    result = invoke("torch2onnx", CNN, "--input-shape", "2,3,32,32", "--dynamic", "batch:1..8", "-o", out)
    assert result.exit_code == 0, result.output
    shapes = json.loads((tmp_path / "cnn.onnx.fwconv.json").read_text())["validation"]["shapes"]
    assert [s["inputs"]["image"][0] for s in shapes] == [1, 5, 8]
    assert all(s["p50_ms"]["reference"] > 0 and s["p50_ms"]["candidate"] > 0 for s in shapes)
    assert "at image[5, 3, 32, 32]: PASS" in result.output and " ms)" in result.output
    shown = invoke("inspect", out).output  # ONNX records no bounds: the manifest's validated range is shown
    assert "image dim 0 (batch)" in shown and "validated range: image dim 0 (batch) 1..8" in shown


def test_sizes_tried_cover_the_bounds():
    from fwconv.dynamic import DynamicDim, parse_dynamic, shape_sets, sizes_to_try

    assert sizes_to_try(DynamicDim("x", 1, "seq", 4, 32), 16) == [4, 16, 17, 32]
    tied = parse_dynamic(["a:1=seq:4..32", "b:1=seq:4..32"])
    sets = shape_sets(tied, {"a": [1, 16], "b": [1, 16]})
    assert all(s["a"] == s["b"] for s in sets) and [s["a"][1] for s in sets] == [4, 17, 32]
    (named,) = parse_dynamic(["serving_default_x:0:1=seq:2..8"])  # TFLite names hold ':'
    assert (named.input, named.dim, named.label, named.min, named.max) == ("serving_default_x:0", 1, "seq", 2, 8)
    assert sizes_to_try(DynamicDim("x", 0, "n", 30, None), 30) == [30, 31, 60]  # unbounded: above the example too


def test_a_huge_bound_is_capped_like_a_huge_input_shape(tmp_path, monkeypatch):
    """--dynamic batch:1..10**8 would allocate terabytes at the largest size it validates: exit 2,
    one line, nothing written, refused by the option check (the --max-size cap, as for
    --input-shape) before the source is loaded: prepare_source, which every conversion starts
    with, is made to fail the test if it is reached."""
    from fwconv.convert import pipeline

    def reached(*args, **kwargs):
        raise AssertionError("the source was loaded: the bound was not refused up front")

    monkeypatch.setattr(pipeline, "prepare_source", reached)
    for bound in ("batch:1..100000000", "image:0:1..1000000000000"):
        result = invoke("torch2onnx", CNN, "--input-shape", "1,3,32,32", "--dynamic", bound,
                        "-o", tmp_path / "x.onnx", "--no-latency")
        assert result.exit_code == 2 and "cap" in result.output and len(result.output.strip().splitlines()) == 1, \
            result.output
        assert "bytes" in result.output and "--dynamic" in result.output
    assert not list(tmp_path.iterdir())


# --- TensorFlow/Keras sources (tf2onnx), ExecuTorch, onnx2torch, SavedModel targets ---------------

@pytest.fixture(scope="module")
def keras_models(tmp_path_factory):
    """A Keras layers CNN (fixed 16x16x3 image, batch left open as Keras does) and a text model
    whose signature leaves the sequence length open (Embedding, LSTM, MultiHeadAttention)."""
    import keras

    out = tmp_path_factory.mktemp("keras_dyn")
    keras.utils.set_random_seed(0)
    img = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(img)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    cnn = keras.Model(img, keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D()(x)))
    ids = keras.Input((None,), dtype="int32", name="ids")
    h = keras.layers.LSTM(16, return_sequences=True)(keras.layers.Embedding(100, 16)(ids))
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(2, 8)(h, h))
    text = keras.Model(ids, keras.layers.Dense(5, name="scores")(h))
    paths = {"cnn": out / "cnn.keras", "text": out / "text.keras"}
    cnn.save(paths["cnn"])
    text.save(paths["text"])
    paths["cnn_sm"] = out / "cnn_sm"
    cnn.export(str(paths["cnn_sm"]), verbose=False)
    return {"dir": out, "paths": paths, "models": {"cnn": cnn, "text": text}}


def _keras(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x, training=False))


@pytest.fixture(scope="module")
def keras_cnn_onnx(keras_models):
    out = keras_models["dir"] / "cnn.onnx"
    result = invoke("convert", keras_models["paths"]["cnn"], "--to", "onnx", "--dynamic", "batch:1..8",
                    "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    return out, json.loads((keras_models["dir"] / "cnn.onnx.fwconv.json").read_text())


@pytest.mark.slow
def test_keras_cnn_dynamic_batch_through_tf2onnx(keras_models, keras_cnn_onnx):
    """tf2onnx keeps the batch symbolic; ONNX Runtime matches Keras at batch 1, 3 and 8."""
    import onnx

    out, manifest = keras_cnn_onnx
    assert manifest["extra"]["dynamic"] == [{"input": "image", "dim": 0, "label": "batch", "min": 1, "max": 8}]
    assert [s["inputs"]["image"][0] for s in manifest["validation"]["shapes"]] == [5, 8]
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [16, 16, 3]
    model = keras_models["models"]["cnn"]
    for batch in (1, 3, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 16, 16, 3)).astype(np.float32)
        want = _keras(model, x)
        assert want.std() > 1e-3  # a degenerate reference would prove nothing
        assert scaled_error(want, _onnx(out, x)) < 1e-4, batch


@pytest.mark.slow
def test_keras_text_sequence_left_open_by_its_signature(keras_models):
    """The model's own None sequence dim is honoured (no --dynamic for it), the batch by
    --dynamic batch; ONNX Runtime matches Keras at lengths 1..40, 13 included."""
    out = keras_models["dir"] / "text.onnx"
    result = invoke("convert", keras_models["paths"]["text"], "--to", "onnx", "--input-shape", "2,12",
                    "--input-dtype", "int32", "--dynamic", "batch", "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    manifest = json.loads((keras_models["dir"] / "text.onnx.fwconv.json").read_text())
    assert {(d["input"], d["dim"]) for d in manifest["extra"]["dynamic"]} == {("ids", 0), ("ids", 1)}
    assert manifest["inputs"][0]["shape"] == [None, None]
    model = keras_models["models"]["text"]
    for batch, length in ((1, 1), (3, 13), (2, 40)):
        ids = np.random.default_rng(length).integers(0, 100, (batch, length)).astype(np.int32)
        assert scaled_error(_keras(model, ids), _onnx(out, ids)) < 1e-4, (batch, length)


@pytest.mark.slow
def test_savedmodel_source_dynamic_batch_through_tf2onnx(keras_models, tmp_path):
    """A SavedModel (the same CNN, `model.export`) with --dynamic batch: ONNX Runtime matches Keras
    at batch 1, 4 and 16 (no MAX: the validator tries up to 16)."""
    out = tmp_path / "sm.onnx"
    result = invoke("savedmodel2onnx", keras_models["paths"]["cnn_sm"], "--dynamic", "batch", "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "sm.onnx.fwconv.json").read_text())
    assert manifest["inputs"][0]["shape"][0] is None and all(s["passed"] for s in manifest["validation"]["shapes"])
    model = keras_models["models"]["cnn"]
    for batch in (1, 4, 16):
        x = np.random.default_rng(batch).standard_normal((batch, 16, 16, 3)).astype(np.float32)
        assert scaled_error(_keras(model, x), _onnx(out, x)) < 1e-4, batch


@pytest.mark.slow
def test_a_dim_the_tf_signature_fixes_is_refused(keras_models, tmp_path):
    result = invoke("convert", keras_models["paths"]["cnn"], "--to", "onnx", "--dynamic", "image:1",
                    "-o", tmp_path / "x.onnx")
    assert result.exit_code == 2 and "signature fixes" in result.output, result.output
    assert not (tmp_path / "x.onnx").exists()


def _executorch(path, x: np.ndarray) -> np.ndarray:
    """As an app does: the method takes inputs of any size inside the program's bounds."""
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return method.execute([torch.from_numpy(x)])[0].numpy()


@pytest.mark.slow
def test_executorch_bounded_batch_and_sequence(tmp_path):
    """XNNPACK .pte programs: the CNN's batch with no MAX (bounded at the default 64, noted), the
    transformer's sequence 2..24 as asked; each run in the ExecuTorch runtime at every size
    against PyTorch, and refused past its bound."""
    out, manifest, _ = _convert(tmp_path, CNN, "pte", "1,3,32,32", "batch")
    assert manifest["extra"]["dynamic"] == [{"input": "image", "dim": 0, "label": "batch", "min": 1, "max": 64}]
    assert any("had no MAX: bounded at 64" in n for n in manifest["notes"]), manifest["notes"]
    assert manifest["inputs"][0]["shape"] == [None, 3, 32, 32]
    assert [s["inputs"]["image"][0] for s in manifest["validation"]["shapes"]] == [5, 64]
    for batch in (1, 3, 64):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        assert scaled_error(_torch(CNN, x), _executorch(out, x)) < 1e-4, batch
    with pytest.raises(Exception):
        _executorch(out, np.zeros((65, 3, 32, 32), np.float32))
    seq_dir = tmp_path / "seq"
    seq_dir.mkdir()
    out, manifest, _ = _convert(seq_dir, TRANSFORMER, "pte", "1,8,32", "tokens:1=seq:2..24")
    assert manifest["extra"]["dynamic"][0]["max"] == 24
    assert "tokens dim 1 (up to 24)" in invoke("inspect", out).output
    for length in (2, 13, 24):
        x = np.random.default_rng(length).standard_normal((1, length, 32)).astype(np.float32)
        assert scaled_error(_torch(TRANSFORMER, x), _executorch(out, x)) < 1e-4, length
    with pytest.raises(Exception):
        _executorch(out, np.zeros((1, 25, 32), np.float32))


@pytest.mark.slow
def test_executorch_both_backends_keep_an_asked_cnn_bound(tmp_path):
    """The CNN's batch asked up to 32 on both backends (`--backend auto`): each program takes 32
    (lowering once narrowed a conv net's batch range to 15: fwconv lowers without shape guards);
    the kept one runs at 1, 7 and 32."""
    out = tmp_path / "cnn.pte"
    result = invoke("convert", CNN, "--to", "pte", "--backend", "auto", "--input-shape", "1,3,32,32",
                    "--dynamic", "image:0=batch:1..32", "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "cnn.pte.fwconv.json").read_text())
    assert manifest["extra"]["dynamic"][0]["max"] == 32
    assert [r["status"] for r in manifest["extra"]["routes"]] == ["pass", "pass"], manifest["extra"]["routes"]
    for batch in (1, 7, 32):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        assert scaled_error(_torch(CNN, x), _executorch(out, x)) < 1e-4, batch


def test_executorch_refuses_dynamic_int8(tmp_path):
    calib = tmp_path / "calib.npz"
    np.savez(calib, image=np.zeros((2, 1, 3, 32, 32), np.float32))
    result = invoke("convert", CNN, "--to", "pte", "--input-shape", "1,3,32,32", "--dynamic", "batch",
                    "--quantize", "int8", "--calibration", calib, "-o", tmp_path / "x.pte")
    assert result.exit_code == 2 and "--dynamic with --quantize" in result.output, result.output


@pytest.mark.slow
def test_onnx_with_symbolic_dims_to_torchscript(tmp_path):
    """onnx2torch's traced module keeps the sequence length: torch.jit.load'ed, it matches PyTorch
    at lengths 2, 13 and 24 (the ONNX's symbolic dim, honoured without --dynamic)."""
    import torch

    onnx_path, _, _ = _convert(tmp_path, TRANSFORMER, "onnx", "1,8,32", "tokens:1=seq:2..24")
    out = tmp_path / "model.pt"
    result = invoke("onnx2torch", onnx_path, "--input-shape", "1,8,32", "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "model.pt.fwconv.json").read_text())
    assert manifest["extra"]["dynamic"] and all(s["passed"] for s in manifest["validation"]["shapes"])
    module = torch.jit.load(str(out))
    for length in (2, 13, 24):
        x = np.random.default_rng(length).standard_normal((1, length, 32)).astype(np.float32)
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        assert scaled_error(_torch(TRANSFORMER, x), got) < 1e-4, length


@pytest.mark.slow
def test_savedmodel_target_dynamic_batch(tmp_path):
    """torch -> ONNX -> SavedModel (onnx2tf): the serving signature takes batch 1, 3 and 8."""
    import tensorflow as tf

    out = tmp_path / "cnn_sm"
    result = invoke("torch2savedmodel", CNN, "--input-shape", "1,3,32,32", "--dynamic", "batch:1..8", "-o", out,
                    "--no-latency")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "fwconv.json").read_text())
    assert [s["inputs"]["image"][0] for s in manifest["validation"]["shapes"]] == [5, 8]
    signature = tf.saved_model.load(str(out)).signatures["serving_default"]
    (name, spec), = signature.structured_input_signature[1].items()
    assert spec.shape[0] is None, spec.shape
    for batch in (1, 3, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        feed = x.transpose(0, 2, 3, 1) if list(spec.shape[1:]) == [32, 32, 3] else x
        got = list(signature(**{name: tf.constant(feed)}).values())[0].numpy()
        assert scaled_error(_torch(CNN, x), got) < 1e-4, batch
    assert all(s["passed"] for s in manifest["validation"]["shapes"])


@pytest.mark.slow
def test_a_sources_own_dim_onnx2tf_cannot_keep_is_fixed_with_a_note(tmp_path):
    """An ONNX BERT whose sequence is symbolic (its own, no --dynamic) to TFLite: onnx2tf cannot
    keep that dim, so it is fixed at the sample's length and the manifest says so; LiteRT matches
    PyTorch at that length. (Asked with --dynamic, the same dim is an error, never frozen.)"""
    import torch

    from fixtures.thirdparty import build_bert

    onnx_path = tmp_path / "bert.onnx"
    made = invoke("torch2onnx", f"{REPO}/fixtures/thirdparty.py:build_bert", "--input-shape", "1,16", "--input-dtype",
                  "int64", "--dynamic", "input_ids:1=seq:4..32", "-o", onnx_path, "--no-latency")
    assert made.exit_code == 0, made.output
    out = tmp_path / "bert.tflite"
    result = invoke("convert", onnx_path, "--to", "tflite", "--input-shape", "1,16", "--input-dtype", "int64",
                    "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "bert.tflite.fwconv.json").read_text())
    assert any("dynamic dims (seq) are fixed" in n for n in manifest["notes"]), manifest["notes"]
    assert "dynamic" not in manifest["extra"] and manifest["inputs"][0]["shape"] == [1, 16]
    ids = np.random.default_rng(16).integers(0, 1000, (1, 16)).astype(np.int64)
    with torch.no_grad():
        want = build_bert()(torch.from_numpy(ids))[0].numpy()
    from conftest import run_litert

    got = next(v for v in run_litert(str(out), {"input_ids": ids}).values() if v.shape == want.shape)
    assert scaled_error(want, got) < 1e-4


def test_a_dynamo_export_failure_is_summed_up_by_its_cause(tmp_path):
    """torch.onnx's dynamo exporter opens its message with advice; the one line fwconv shows (a
    route's note, a stage detail, the error) must be the cause under its "Exception summary"."""
    import torch

    from fixtures.models import build_cnn
    from fwconv.errors import first_line

    with pytest.raises(Exception) as raised:
        torch.onnx.export(build_cnn().eval(), (torch.randn(8, 3, 32, 32),), str(tmp_path / "x.onnx"), dynamo=True,
                          dynamic_shapes=({0: torch.export.Dim("b", min=1, max=4)},))
    assert first_line(raised.value) == \
        "export the model with torch.export failed: ConstraintViolationError: 8 not in range [1, 4]"
