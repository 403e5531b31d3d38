"""TorchScript sources take the modern routes (issue 25): real `transformers` models traced to
`.pt` (random init), converted with the default commands; the TS2EP stage in the manifest; each
artifact run in its own runtime here against the TorchScript module; a model TS2EP cannot take
falls back to the TorchScript road and says why."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import invoke, scaled_error

pytestmark = pytest.mark.slow


class _Out(__import__("torch").nn.Module):
    """One tensor out (logits or pooled features), as a deployed model returns."""

    def __init__(self, model, key: str):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return getattr(self.model(x), self.key)


_LM = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=64)


def _models():
    import transformers

    from fixtures.thirdparty import _trained_scale

    return {
        "convnextv2": (lambda: _Out(transformers.ConvNextV2Model(transformers.ConvNextV2Config(
            num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=32)), "pooler_output"), (1, 3, 32, 32)),
        "llama": (lambda: _Out(transformers.LlamaForCausalLM(transformers.LlamaConfig(**_LM)), "logits"), (1, 16)),
        "mobilevitv2": (lambda: _Out(_trained_scale(transformers.MobileViTV2Model(
            transformers.MobileViTV2Config(image_size=64))), "pooler_output"), (1, 3, 64, 64)),
        "deberta": (lambda: _Out(transformers.DebertaV2Model(transformers.DebertaV2Config(
            vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=64)), "last_hidden_state"), (1, 16)),
        "dpt": (lambda: _Out(_trained_scale(transformers.DPTForDepthEstimation(transformers.DPTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
            intermediate_size=64, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
            fusion_hidden_size=16, head_hidden_size=8))), "predicted_depth"), (1, 3, 32, 32)),
        # experts run by torch's grouped matmul (transformers' default): TS2EP's export and the
        # TorchScript exporter (aten::histc) both refuse it
        "mixtral": (lambda: _Out(transformers.MixtralForCausalLM(transformers.MixtralConfig(
            num_local_experts=4, num_experts_per_tok=2, **_LM)), "logits"), (1, 16)),
        # experts in a Python loop over torch.where: a data-dependent size TS2EP cannot export
        "mixtral-eager": (lambda: _Out(transformers.MixtralForCausalLM(transformers.MixtralConfig(
            num_local_experts=4, num_experts_per_tok=2, experts_implementation="eager", **_LM)), "logits"), (1, 16)),
    }


_PT: dict = {}
TOKENS = ("llama", "deberta", "mixtral", "mixtral-eager")  # models fed token ids


def traced(name: str, tmp_path_factory) -> tuple[str, np.ndarray]:
    """The model traced and saved with torch.jit.save; (path, a sample input). Traced in a fresh
    process, as a user's script would: in this one, an earlier test's litert-torch export_hf
    import has swapped transformers' RMSNorm for its own (a global patch of
    use_kernel_forward_from_hub), which torch.jit.trace cannot trace in a model imported later."""
    import subprocess
    import sys

    if name not in _PT:
        folder = tmp_path_factory.mktemp(name)
        path, sample = str(folder / f"{name}.pt"), str(folder / "x.npy")
        here = os.path.dirname(os.path.abspath(__file__))
        code = (f"import sys; sys.path[:0] = [{here!r}, {os.path.dirname(here)!r}]; "
                f"import test_torchscript_routes as t; t.trace_here({name!r}, {path!r}, {sample!r})")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        _PT[name] = (path, np.load(sample))
    return _PT[name]


def trace_here(name: str, path: str, sample: str) -> None:
    import torch

    build, shape = _models()[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randint(0, 300, shape) if name in TOKENS else torch.randn(shape)
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, (x,), strict=False), path)
    np.save(sample, x.numpy())


def torchscript_output(path: str, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.jit.load(path)(torch.from_numpy(x)).numpy()


def run_artifact(path: str, x: np.ndarray) -> np.ndarray:
    """The artifact in its own runtime: LiteRT, ONNX Runtime or ExecuTorch."""
    if path.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=path).get_signature_runner()
        ((name, detail),) = runner.get_input_details().items()
        return next(iter(runner(**{name: x.astype(detail["dtype"])}).values()))  # litert-torch: int64 ids as int32
    if path.endswith(".onnx"):
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    return method.execute([torch.from_numpy(x)])[0].numpy()


@pytest.mark.parametrize("name, command, suffix", [
    ("convnextv2", "torch2tflite", ".tflite"), ("convnextv2", "torch2onnx", ".onnx"), ("convnextv2", "torch2pte", ".pte"),
    ("llama", "torch2tflite", ".tflite"), ("llama", "torch2onnx", ".onnx"), ("llama", "torch2pte", ".pte"),
    ("mobilevitv2", "torch2tflite", ".tflite"),
    ("deberta", "torch2tflite", ".tflite"),
    # TS2EP's own export cannot guard DPT's tensor-computed reshape sizes; fwconv folds them first
    ("dpt", "torch2tflite", ".tflite")])
def test_torchscript_takes_the_exported_program_routes(name, command, suffix, tmp_path, tmp_path_factory):
    pt, x = traced(name, tmp_path_factory)
    out = tmp_path / f"{name}{suffix}"
    dtype = ["--input-dtype", "int64"] if name in TOKENS else []
    r = invoke(command, pt, "--input-shape", ",".join(map(str, x.shape)), *dtype, "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / f"{name}{suffix}.fwconv.json").read_text())
    assert manifest["stages"][0]["stage"] == "ts2ep" and manifest["extra"]["ts2ep"]["status"] == "ok"
    want = torchscript_output(pt, x)
    got = run_artifact(str(out), x)
    assert scaled_error(want, np.asarray(got).reshape(want.shape)) < 1e-3


def test_a_model_ts2ep_cannot_take_falls_back_and_says_why(tmp_path, tmp_path_factory):
    """Mixtral with eager experts: its routing selects tokens with torch.where, a data-dependent
    size TS2EP's export cannot guard on; the TorchScript road converts it, the manifest and notes
    say TS2EP failed and why, and the ONNX runs in ONNX Runtime here against the TorchScript module."""
    pt, x = traced("mixtral-eager", tmp_path_factory)
    out = tmp_path / "mixtral.onnx"
    r = invoke("torch2onnx", pt, "--input-shape", "1,16", "--input-dtype", "int64", "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "mixtral.onnx.fwconv.json").read_text())
    assert manifest["stages"][0] == {**manifest["stages"][0], "stage": "ts2ep", "status": "failed"}
    assert "data-dependent" in manifest["extra"]["ts2ep"]["detail"]
    assert any(n.startswith("TS2EP failed") and "TorchScript road was taken" in n for n in manifest["notes"])
    want = torchscript_output(pt, x)
    assert scaled_error(want, run_artifact(str(out), x).reshape(want.shape)) < 1e-4


def test_a_model_neither_road_takes_gets_one_line_naming_both(tmp_path, tmp_path_factory):
    """transformers' Mixtral (grouped-matmul experts): TS2EP fails, then the TorchScript exporter
    (aten::histc): one error line that names both failures, nothing written."""
    pt, _ = traced("mixtral", tmp_path_factory)
    out = tmp_path / "mixtral.tflite"
    r = invoke("torch2tflite", pt, "--input-shape", "1,16", "--input-dtype", "int64", "-o", out, "--no-latency")
    errors = [line for line in r.output.splitlines() if line.startswith("fwconv: error")]
    assert r.exit_code == 1 and len(errors) == 1, r.output
    assert "histc" in errors[0] and "TS2EP failed first" in errors[0], errors[0]
    assert not out.exists() and not (tmp_path / "mixtral.tflite.fwconv.json").exists()


def test_a_dynamic_sequence_stays_dynamic_through_ts2ep(tmp_path, tmp_path_factory):
    """--dynamic on a traced Llama: TS2EP keeps the sequence symbolic (no size folding), the dynamo
    exporter writes it so, and ONNX Runtime runs lengths the trace never saw here; DPT, whose
    traced sizes TS2EP can only fold at fixed shapes, gets one line naming both refusals."""
    import onnxruntime as ort

    pt, x = traced("llama", tmp_path_factory)
    out = tmp_path / "llama.onnx"
    r = invoke("torch2onnx", pt, "--input-shape", "1,16", "--input-dtype", "int64", "--dynamic", "x:1=seq:1..32",
               "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    assert "dims kept dynamic: seq" in json.loads((tmp_path / "llama.onnx.fwconv.json").read_text())["extra"]["ts2ep"][
        "detail"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for length in (5, 27):
        ids = np.random.default_rng(length).integers(0, 300, (1, length))
        want = torchscript_output(pt, ids)
        assert scaled_error(want, session.run(None, {session.get_inputs()[0].name: ids})[0]) < 1e-4
    dpt, _ = traced("dpt", tmp_path_factory)
    r = invoke("torch2onnx", dpt, "--input-shape", "1,3,32,32", "--dynamic", "batch:1..4", "-o", tmp_path / "d.onnx")
    errors = [line for line in r.output.splitlines() if line.startswith("fwconv: error")]
    assert r.exit_code == 2 and len(errors) == 1 and "TS2EP failed" in errors[0], r.output


def test_torchscript_exporter_takes_a_traced_causal_lm(tmp_path, tmp_path_factory):
    """The TorchScript road's own gaps, on transformers' Llama: `aten::diff` (its mask code) and
    scaled_dot_product_attention with enable_gqa (fewer KV heads than query heads) have symbolics;
    the ONNX runs in ONNX Runtime inside the test and matches the TorchScript module."""
    import onnx
    import onnxruntime as ort

    pt, x = traced("llama", tmp_path_factory)
    out = tmp_path / "llama.onnx"
    r = invoke("torch2onnx", pt, "--input-shape", "1,16", "--input-dtype", "int64", "--exporter", "torchscript",
               "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "llama.onnx.fwconv.json").read_text())["extra"]["exporter"] == "torchscript"
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert "Tile" in ops  # the KV heads repeated for their query heads (the diff folds away: constant positions)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    want = torchscript_output(pt, x)
    assert scaled_error(want, got.reshape(want.shape)) < 1e-5


def test_opset23_attention_and_rms_norm_reach_onnx2tf_expanded(tmp_path, tmp_path_factory):
    """A traced Llama exported at --opset 23: torch.onnx writes ONNX's Attention and
    RMSNormalization, which onnx2tf has no converter for; fwconv expands them into ONNX's own
    function bodies on onnx2tf's copy, and the .tflite runs in LiteRT here against the module."""
    pt, x = traced("llama", tmp_path_factory)
    out = tmp_path / "llama.tflite"
    r = invoke("torch2tflite", pt, "--input-shape", "1,16", "--input-dtype", "int64", "--via", "onnx", "--opset", "23",
               "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    stages = {s["stage"]: s for s in json.loads((tmp_path / "llama.tflite.fwconv.json").read_text())["stages"]}
    detail = stages["prepare:onnxsim"]["detail"]
    assert "Attention" in detail and "RMSNormalization" in detail and "expanded into ONNX function bodies" in detail
    want = torchscript_output(pt, x)
    assert scaled_error(want, np.asarray(run_artifact(str(out), x)).reshape(want.shape)) < 1e-4


def test_onnxsim_before_onnx2tf_writes_no_runtime_contrib_ops(tmp_path, tmp_path_factory):
    """DPT's TorchScript export (the road a `.pt` TS2EP cannot take goes), simplified as fwconv does
    before onnx2tf: onnxsim 0.8's fuse_attention pass would write ONNX Runtime's com.microsoft
    Attention (onnx2tf: "No module named 'onnx2tf.ops.Attention'"); fwconv skips that pass and keeps
    only standard ops."""
    import onnx
    import onnxsim
    import torch

    from fwconv.convert.edges.onnx_to_tf import simplify

    pt, x = traced("dpt", tmp_path_factory)
    out = tmp_path / "dpt.onnx"
    with torch.no_grad():
        torch.onnx.export(torch.jit.load(pt), (torch.from_numpy(x),), str(out), dynamo=False, opset_version=18)
    model = onnx.load(out)
    stock, _ = onnxsim.simplify(model)
    assert "com.microsoft" in {n.domain for n in stock.graph.node}  # the fusion is real without the skip
    simplified, detail = simplify(model)
    assert detail == "simplified" and {n.domain for n in simplified.graph.node} <= {"", "ai.onnx"}


def test_inspect_says_which_routes_are_open_to_this_pt(tmp_path_factory):
    """`inspect FILE.pt --input-shape`: TS2EP tried on the file at that sample, and the routes per
    target it leaves: every .pt2 route for DPT; the TorchScript road alone (no .pte) for Mixtral's
    eager experts."""
    dpt, _ = traced("dpt", tmp_path_factory)
    r = invoke("inspect", dpt, "--input-shape", "1,3,32,32", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["ts2ep"]["status"] == "ok" and info["open_routes"]["pte"] == ["torch -> pte (xnnpack)"]
    assert "torch -> tflite (litert)" in info["open_routes"]["tflite"]
    moe, _ = traced("mixtral-eager", tmp_path_factory)
    r = invoke("inspect", moe, "--input-shape", "1,16", "--input-dtype", "int64")
    assert r.exit_code == 0, r.output
    assert "TS2EP failed" in r.output and "pte: none" in r.output and "litert" not in r.output, r.output
