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
    suffix = {"onnx": ".onnx", "tflite": ".tflite"}[target]
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


def test_routes_that_cannot_keep_dims_refuse_clearly(tmp_path):
    litert = invoke("torch2tflite", CNN, "--input-shape", "1,3,32,32", "--dynamic", "batch", "--via", "litert",
                    "-o", tmp_path / "x.tflite")
    assert litert.exit_code == 2 and "JAX" in litert.output
    bad = invoke("torch2onnx", CNN, "--input-shape", "1,3,32,32", "--dynamic", "image:0:8..2")
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    missing = invoke("torch2onnx", CNN, "--input-shape", "1,3,32,32", "--dynamic", "nope:0", "-o", tmp_path / "m.onnx")
    assert missing.exit_code == 2 and "nope" in missing.output


def test_sizes_tried_cover_the_bounds():
    from fwconv.dynamic import DynamicDim, parse_dynamic, shape_sets, sizes_to_try

    assert sizes_to_try(DynamicDim("x", 1, "seq", 4, 32), 16) == [4, 16, 17, 32]
    tied = parse_dynamic(["a:1=seq:4..32", "b:1=seq:4..32"])
    sets = shape_sets(tied, {"a": [1, 16], "b": [1, 16]})
    assert all(s["a"] == s["b"] for s in sets) and [s["a"][1] for s in sets] == [4, 17, 32]


def test_a_huge_bound_is_capped_like_a_huge_input_shape(tmp_path):
    """--dynamic NAME:DIM:1..10**12 would allocate terabytes at the largest size it validates: exit 2,
    one line, nothing written (the --max-size cap, as for --input-shape)."""
    result = invoke("torch2onnx", CNN, "--input-shape", "1,3,32,32", "--dynamic", "image:0:1..1000000000000",
                    "-o", tmp_path / "x.onnx", "--no-latency")
    assert result.exit_code == 2 and "cap" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()
