"""PyTorch -> ExecuTorch `.pte` on fixture models and real third-party architectures.

Each parity test runs the `.pte` in the ExecuTorch runtime itself (executorch.runtime, not
fwconv's runner) and the source in PyTorch, on the same inputs; the manifest's delegation summary
is checked against the program's own contents. Negative tests: perturbed weights (exit 3), a
TorchScript source, an op outside Core ATen, a kernel the runtime lacks (exit 5), corrupt files
(exit 2, one line).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import FLEX_FACTORY, REPO, invoke, run_torch, scaled_error

pytest.importorskip("executorch")  # a safety net only: CI installs it (fwconv[all])

FP32_LIMIT = 1e-4
THIRDPARTY = os.path.join(REPO, "fixtures", "thirdparty.py")


def run_pte(path: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a .pte's forward in the ExecuTorch runtime directly, inputs in the feed's order."""
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    return [o.numpy() for o in method.execute([torch.from_numpy(v.copy()) for v in feed.values()])]


def _manifest(result) -> dict:
    with open(result.artifact + ".fwconv.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def feeds(models_dir, tmp_path_factory):
    """Inputs per model, and an .npz holding them (the conversions take the same file)."""
    out = tmp_path_factory.mktemp("pte_inputs")
    rng = np.random.default_rng(0)
    extra = {"bert": {"input_ids": rng.integers(0, 1000, (1, 16), dtype=np.int64)},
             "vit": {"pixel_values": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)}}
    feeds = {}
    for name in ("cnn", "two_io", "tokens", "mlp"):
        with np.load(models_dir / f"{name}.npz") as data:
            feeds[name] = ({k: data[k] for k in data.files}, str(models_dir / f"{name}.npz"))
    for name, feed in extra.items():
        np.savez(out / f"{name}.npz", **feed)
        feeds[name] = (feed, str(out / f"{name}.npz"))
    return feeds


def _source(name: str, models_dir) -> str:
    return f"{THIRDPARTY}:build_{name}" if name in ("bert", "vit") else str(models_dir / f"{name}.pt2")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn", "two_io", "tokens", "bert", "vit"])
def test_pte_matches_torch_in_the_executorch_runtime(name, models_dir, feeds, convert_cached):
    feed, npz = feeds[name]
    source = _source(name, models_dir)
    if name == "vit":  # its forward(*args) names no inputs: an .npz cannot bind, a named shape can
        result = convert_cached(source, "pte", input_shape=("pixel_values:1,3,32,32",))
    else:
        result = convert_cached(source, "pte", inputs=npz)
    assert result.validation.parity_passed
    torch_outs = run_torch(source, feed)
    pte_outs = run_pte(result.artifact, feed)
    assert len(pte_outs) == len(torch_outs)
    for ref, out in zip(torch_outs, pte_outs, strict=True):
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert scaled_error(ref, out) <= FP32_LIMIT

    manifest = _manifest(result)
    assert manifest["format"] == "pte" and manifest["route"] == ["torch", "pte"]
    assert [i["name"] for i in manifest["inputs"]] == list(feed)
    assert [i["shape"] for i in manifest["inputs"]] == [list(v.shape) for v in feed.values()]
    assert [i["dtype"] for i in manifest["inputs"]] == [v.dtype.name for v in feed.values()]
    assert [o["shape"] for o in manifest["outputs"]] == [list(o.shape) for o in torch_outs]
    with open(result.artifact, "rb") as f:
        data = f.read()
    assert manifest["size_bytes"] == len(data) and manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["tools"]["executorch"] and manifest["tools"]["torch"]
    assert manifest["extra"]["backend"] == "xnnpack" and manifest["extra"]["methods"] == ["forward"]
    ops = manifest["ops"]
    assert ops["backend"] == "XnnpackBackend" and ops["delegated"]  # XNNPACK took the graph's compute ops
    assert ops["delegate_calls"] == {"XnnpackBackend": ops["delegated_subgraphs"]}
    assert sum(ops["kernels"].values()) == sum(ops["portable"].values())  # the rest is on the runtime's kernels
    if name == "cnn":
        assert "aten_convolution_default" in ops["delegated"] and not ops["portable"]


@pytest.mark.slow
def test_portable_backend_has_no_delegate(models_dir, feeds, convert_cached):
    feed, npz = feeds["cnn"]
    source = _source("cnn", models_dir)
    result = convert_cached(source, "pte", inputs=npz, backend="portable")
    for ref, out in zip(run_torch(source, feed), run_pte(result.artifact, feed), strict=True):
        assert scaled_error(ref, out) <= FP32_LIMIT
    ops = _manifest(result)["ops"]
    assert ops["backend"] is None and ops["delegated"] == {} and ops["delegate_calls"] == {}
    assert "aten::convolution.out" in ops["kernels"]


@pytest.mark.slow
def test_int8_is_quantized_for_xnnpack_and_close_to_torch(models_dir, feeds, convert_cached, tmp_path_factory):
    """PT2E int8 on the user's calibration samples: the delegate takes the (de)quantize ops too."""
    calib = tmp_path_factory.mktemp("pte_calib") / "cnn_calib.npz"
    np.savez(calib, image=np.random.default_rng(42).standard_normal((32, 1, 3, 32, 32)).astype(np.float32))
    feed, npz = feeds["cnn"]
    source = _source("cnn", models_dir)
    fp32 = convert_cached(source, "pte", inputs=npz)
    q = convert_cached(source, "pte", inputs=npz, quantize="int8", calibration=str(calib))
    assert q.validation.parity_passed and q.validation.outputs[0].tolerance["precision"] == "int8"
    (ref,), (out,) = run_torch(source, feed), run_pte(q.artifact, feed)
    assert 0 < scaled_error(ref, out) <= 0.05  # really quantized, and still close
    manifest = _manifest(q)
    assert manifest["extra"]["precision"] == "int8"
    assert manifest["ops"]["delegated"].get("quantized_decomposed_quantize_per_tensor_default", 0) > 0
    assert not manifest["ops"]["portable"]
    assert manifest["size_bytes"] < _manifest(fp32)["size_bytes"]
    r = invoke("torch2pte", source, "--quantize", "int8", "--calibration", calib, "--backend", "portable",
               "-o", tmp_path_factory.mktemp("pte_q") / "x.pte")
    assert r.exit_code == 2 and "XNNPACK" in r.output


@pytest.mark.slow
def test_auto_backend_tries_both_and_keeps_one(models_dir, feeds, convert_cached):
    feed, npz = feeds["mlp"]
    result = convert_cached(_source("mlp", models_dir), "pte", inputs=npz, backend="auto")
    extra = _manifest(result)["extra"]
    assert sorted(r["route"] for r in extra["routes"]) == ["torch -> pte (portable)", "torch -> pte (xnnpack)"]
    assert extra["chosen_route"] == f"torch -> pte ({extra['backend']})"
    assert all(r["status"] == "pass" for r in extra["routes"])


@pytest.mark.slow
def test_inspect_shows_names_methods_and_delegation(models_dir, feeds, convert_cached):
    result = convert_cached(_source("two_io", models_dir), "pte", inputs=feeds["two_io"][1])
    r = invoke("inspect", result.artifact, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["format"] == "pte" and info["methods"] == ["forward"]
    assert [i["name"] for i in info["inputs"]] == ["image", "meta"]
    assert info["inputs"][0]["layout"] == "NCHW"
    assert info["ops"]["delegate_calls"]["XnnpackBackend"] >= 1 and "delegated" in info["ops"]
    text = invoke("inspect", result.artifact).output
    assert "methods: forward" in text and "delegated to XnnpackBackend" in text


@pytest.mark.slow
def test_validate_against_perturbed_weights_fails_parity(models_dir, feeds, convert_cached, tmp_path):
    """The .pte is right for the real source and must fail against a module with one weight moved."""
    feed, npz = feeds["cnn"]
    result = convert_cached(_source("cnn", models_dir), "pte", inputs=npz)
    factory = tmp_path / "perturbed.py"
    factory.write_text(textwrap.dedent(f"""
        import sys
        import torch
        sys.path.insert(0, {REPO!r})
        from fixtures.models import build_cnn
        def build(delta=0.0):
            module = build_cnn()
            with torch.no_grad():
                next(p for n, p in module.named_parameters() if "weight" in n).add_(delta)
            return module
        def build_perturbed():
            return build(0.5)
    """))
    ok = invoke("validate", f"{factory}:build", result.artifact, "--inputs", npz, "--no-latency")
    assert ok.exit_code == 0, ok.output
    bad = invoke("validate", f"{factory}:build_perturbed", result.artifact, "--inputs", npz, "--no-latency",
                 "--in-process")
    assert bad.exit_code == 3, bad.output
    assert "parity failed" in bad.output


@pytest.mark.slow
def test_runtime_output_stays_quiet(models_dir, feeds, convert_cached):
    """The runtime's cpuinfo log lines (fd 2) show only with --debug."""
    result = convert_cached(_source("cnn", models_dir), "pte", inputs=feeds["cnn"][1])
    cmd = [sys.executable, "-m", "fwconv.cli", "validate", _source("cnn", models_dir), result.artifact,
           "--inputs", feeds["cnn"][1], "--in-process", "--runs", "3"]
    quiet = subprocess.run(cmd, capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    assert "cpuinfo" not in quiet.stderr and "cpuinfo" not in quiet.stdout
    loud = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True)
    assert loud.returncode == 0 and "cpuinfo" in loud.stderr


@pytest.mark.slow
def test_op_outside_core_aten_is_exit_5(tmp_path):
    (tmp_path / "det.py").write_text(FLEX_FACTORY)
    r = invoke("torch2pte", f"{tmp_path / 'det.py'}:build", "--input-shape", "1,4,4", "-o", tmp_path / "det.pte")
    assert r.exit_code == 5, r.output
    assert "aten._linalg_det.default" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "det.pte").exists()


CUSTOM_OP = """
import torch
LIB = torch.library.Library("fwtest", "DEF")
LIB.define("double(Tensor x) -> Tensor")
LIB.define("double.out(Tensor x, *, Tensor(a!) out) -> Tensor(a!)")
LIB.impl("double", lambda x: x * 2, "CompositeExplicitAutograd")
def _out(x, *, out):
    out.copy_(x * 2)
    return out
LIB.impl("double.out", _out, "CompositeExplicitAutograd")
class Doubler(torch.nn.Module):
    def forward(self, x):
        return torch.ops.fwtest.double(x) + 1
def build():
    return Doubler()
"""


@pytest.mark.slow
def test_missing_kernel_in_runtime_is_exit_5_across_processes(tmp_path):
    """A .pte calling an operator this runtime has no kernel for: exit 5 naming it, also when the
    runner is isolated in its own process."""
    import torch
    from executorch.exir import EdgeCompileConfig, to_edge

    factory = tmp_path / "custom.py"
    factory.write_text(CUSTOM_OP)
    sys.path.insert(0, str(tmp_path))
    try:
        import custom  # noqa: F401  (registers the op in this process)
        exported = torch.export.export(custom.build(), (torch.ones(2, 3),))
    finally:
        sys.path.remove(str(tmp_path))
    program = to_edge(exported, compile_config=EdgeCompileConfig(_check_ir_validity=False)).to_executorch()
    pte = tmp_path / "custom.pte"
    pte.write_bytes(program.buffer)
    r = invoke("validate", f"{factory}:build", pte, "--input-shape", "2,3", "--no-latency")
    assert r.exit_code == 5, r.output
    assert "fwtest::double.out" in r.output and "Traceback" not in r.output


def test_torchscript_source_reaches_pte_through_ts2ep_with_a_dynamic_batch(models_dir, tmp_path):
    """A TorchScript .pt becomes an ExportedProgram first (issue 25), then a .pte checked in the
    ExecuTorch runtime; with --dynamic, TS2EP keeps the asked dim symbolic and the .pte runs at
    another batch size here, against the TorchScript module."""
    import torch
    from executorch.runtime import Runtime

    r = invoke("torch2pte", models_dir / "cnn.pt", "--input-shape", "1,3,32,32", "-o", tmp_path / "x.pte", "--no-latency")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "x.pte.fwconv.json").read_text())
    assert manifest["stages"][0]["stage"] == "ts2ep" and manifest["extra"]["ts2ep"]["status"] == "ok"
    r = invoke("convert", models_dir / "cnn.pt", "--to", "pte", "-o", tmp_path / "y.pte", "--input-shape", "1,3,32,32",
               "--dynamic", "batch:1..4", "--no-latency")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "y.pte.fwconv.json").read_text())
    assert "dims kept dynamic: batch" in manifest["extra"]["ts2ep"]["detail"]
    x = torch.randn(3, 3, 32, 32)
    got = Runtime.get().load_program(str(tmp_path / "y.pte")).load_method("forward").execute([x])[0]
    want = torch.jit.load(str(models_dir / "cnn.pt"))(x)
    assert got.shape == want.shape and float((got - want).abs().max() / want.abs().max()) < 1e-4


def test_backend_and_quantize_options_are_checked_before_loading(models_dir, tmp_path):
    r = invoke("convert", models_dir / "cnn.pt2", "--to", "tflite", "--backend", "portable")
    assert r.exit_code == 2 and "--backend portable applies to ExecuTorch" in r.output
    r = invoke("torch2pte", models_dir / "cnn.pt2", "--quantize", "fp16", "-o", tmp_path / "x.pte")
    assert r.exit_code == 2 and "fp16" in r.output
    r = invoke("torch2pte", models_dir / "cnn.pt2", "--via", "litert", "-o", tmp_path / "x.pte")
    assert r.exit_code == 2 and "no route from torch to pte via litert" in r.output


@pytest.fixture(scope="module")
def small_pte(tmp_path_factory):
    """A real .pte made here with the ExecuTorch API (no fwconv), for the corrupt-file tests."""
    import torch
    from executorch.exir import to_edge

    out = tmp_path_factory.mktemp("small_pte") / "linear.pte"
    torch.manual_seed(0)
    exported = torch.export.export(torch.nn.Linear(4, 3).eval(), (torch.ones(1, 4),))
    out.write_bytes(to_edge(exported).to_executorch().buffer)
    return out


def test_format_is_sniffed_from_the_flatbuffer_identifier(small_pte, tmp_path):
    from fwconv.models.formats import detect_format

    assert small_pte.read_bytes()[4:8] == b"ET12"
    assert detect_format(str(small_pte)) == "pte"
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(small_pte.read_bytes())
    assert detect_format(str(renamed)) == "pte"  # content decides, not the suffix


def test_bare_pte_is_described_by_position(small_pte):
    r = invoke("inspect", small_pte, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert [(i["name"], i["shape"], i["dtype"]) for i in info["inputs"]] == [("input_0", [1, 4], "float32")]
    assert [(o["name"], o["shape"]) for o in info["outputs"]] == [("output_0", [1, 3])]
    assert info["ops"]["delegate_calls"] == {} and info["ops"]["kernels"]["aten::addmm.out"] == 1  # no delegate


@pytest.mark.parametrize("damage", ["truncated", "random_body", "random"])
@pytest.mark.parametrize("command", ["inspect", "validate"])
def test_corrupt_pte_is_exit_2_in_one_line(damage, command, small_pte, tmp_path):
    data = small_pte.read_bytes()
    bad = tmp_path / "bad.pte"
    bad.write_bytes({"truncated": data[: len(data) // 2], "random_body": data[:8] + os.urandom(len(data)),
                     "random": os.urandom(600)}[damage])
    args = ["inspect", bad] if command == "inspect" else ["validate", small_pte, bad, "--in-process", "--no-latency"]
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert "bad.pte" in r.output


def test_corrupt_pte_in_an_isolated_runner_is_exit_2(small_pte, tmp_path):
    bad = tmp_path / "cut.pte"
    bad.write_bytes(small_pte.read_bytes()[:300])
    r = invoke("validate", small_pte, bad, "--no-latency")
    assert r.exit_code == 2, r.output
    assert "ExecuTorch cannot load" in r.output and "File size is too small" in r.output


def test_bare_pte_validates_against_itself_in_isolated_runners(small_pte):
    r = invoke("validate", small_pte, small_pte, "--runs", "3")
    assert r.exit_code == 0, r.output
    assert "[executorch (isolated), cpu]" in r.output and "p50" in r.output


@pytest.mark.slow
def test_gate_converts_and_checks_a_pte_target(models_dir, tmp_path):
    import shutil

    for f in ("cnn.pt2", "cnn.npz"):
        shutil.copy(models_dir / f, tmp_path / f)
    (tmp_path / "fwconv.toml").write_text(textwrap.dedent("""
        [gate]
        output_dir = "artifacts"
        golden_dir = "goldens"
        [[model]]
        name = "cnn"
        source = "cnn.pt2"
        inputs = "cnn.npz"
        targets = ["pte"]
        [model.target.pte]
        backend = "portable"
    """))
    assert invoke("golden", "save", tmp_path / "fwconv.toml").exit_code == 0
    r = invoke("gate", tmp_path / "fwconv.toml", "--no-cache", "--markdown", tmp_path / "gate.md")
    assert r.exit_code == 0, r.output
    assert "1 of 1 passed" in (tmp_path / "gate.md").read_text()
    artifact = tmp_path / "artifacts" / "cnn" / "cnn.pte"
    assert json.loads((tmp_path / "artifacts" / "cnn" / "cnn.pte.fwconv.json").read_text())["extra"]["backend"] == "portable"
    r = invoke("gate", tmp_path / "fwconv.toml", "--check-only")
    assert r.exit_code == 0, r.output
    artifact.write_bytes(artifact.read_bytes()[:500])
    r = invoke("gate", tmp_path / "fwconv.toml", "--check-only")
    assert r.exit_code != 0


def test_cli_and_registries_do_not_import_executorch():
    code = ("import sys; from click.testing import CliRunner; from fwconv.cli import main; "
            "r = CliRunner().invoke(main, ['torch2pte', '--help']); assert r.exit_code == 0, r.output; "
            "from fwconv.convert.edges import all_edges; from fwconv.validators.runners import runner_classes; "
            "all_edges(); runner_classes(); "
            "heavy = [m for m in ('torch', 'executorch', 'torchao') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


GEMMA_FACTORY = '''
import torch, transformers


class Logits(torch.nn.Module):
    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids):
        return self.lm(input_ids=input_ids, use_cache=False).logits


def build_model():
    torch.manual_seed(0)
    config = transformers.GemmaConfig(vocab_size=1024, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                      num_attention_heads=8, num_key_value_heads=4, head_dim=32,
                                      max_position_embeddings=128)
    return Logits(transformers.GemmaForCausalLM(config).eval()).eval()
'''


@pytest.mark.slow
def test_gemma_tanh_gelu_stays_off_xnnpack_and_the_pte_matches(tmp_path):
    """transformers' Gemma uses gelu(approximate="tanh"); ExecuTorch's XNNPACK lowering drops
    `approximate` (XNNPACK's GELU is the erf form). fwconv keeps those GELUs on the portable kernel:
    its .pte matches PyTorch at portable-kernel level, while the stock partitioner's does not."""
    import importlib.util

    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    (tmp_path / "gemma_logits.py").write_text(GEMMA_FACTORY)
    out = tmp_path / "gemma.pte"
    result = invoke("convert", f"{tmp_path / 'gemma_logits.py'}:build_model", "--to", "pte", "-o", out,
                    "--input-shape", "1,16", "--input-dtype", "int64", "--input-range", "0,1023", "--no-latency")
    assert result.exit_code == 0, result.output
    assert "tanh-approximated GELU(s) kept on the portable kernel" in result.output
    spec = importlib.util.spec_from_file_location("gemma_logits", tmp_path / "gemma_logits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, ids = module.build_model(), torch.randint(0, 1024, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids)
        stock = to_edge_transform_and_lower(torch.export.export(model, (ids,)), partitioner=[XnnpackPartitioner()])
    runtime, buffer = Runtime.get(), stock.to_executorch().buffer  # the program reads the buffer: keep it alive
    ours = runtime.load_program(str(out)).load_method("forward").execute([ids])[0]
    theirs = runtime.load_program(buffer).load_method("forward").execute([ids])[0]
    error = lambda got: float((got - want).abs().max() / want.abs().max())
    assert error(ours) < 2e-6, error(ours)
    assert error(theirs) > 5 * error(ours), (error(theirs), error(ours))  # the fault is real without the fix
