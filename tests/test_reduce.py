"""From a refusal to a repro bundle (issue 26): `fwconv debug REF CAND --reduce` cuts the ONNX
graph to the smallest subgraph onnx2tf still gets wrong, every cut re-converted by onnx2tf and run
in LiteRT for real, and writes a bundle whose repro.py needs only onnx2tf."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import invoke
from fixtures.reduce_models import chain_with_pad2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """A 42-node graph with ONNX's Pad in its opset-10 form (value 1.5; onnx2tf pads with zeros),
    converted without repair and kept: the refused candidate."""
    work = tmp_path_factory.mktemp("reduce")
    onnx_path = chain_with_pad2(str(work / "chain.onnx"))
    result = invoke("onnx2tflite", onnx_path, "-o", work / "chain.tflite", "--no-repair", "--keep-failed",
                    "--no-latency")
    assert result.exit_code == 3, result.output
    return work, onnx_path, str(work / "chain.tflite")


def test_reduces_to_the_op_and_the_bundle_reproduces_with_onnx2tf_alone(refused):
    import onnx

    work, onnx_path, candidate = refused
    bundle = work / "bundle"
    before = open(onnx_path, "rb").read()
    result = invoke("debug", onnx_path, candidate, "--reduce", "-o", bundle)
    assert result.exit_code == 3, result.output  # the models still diverge: the bundle comes with the refusal
    assert "reduce: 42 nodes -> 1 (Pad)" in result.output, result.output
    assert open(onnx_path, "rb").read() == before
    assert sorted(os.listdir(bundle)) == ["REPORT.md", "expected.npz", "inputs.npz", "minimal.onnx", "repro.py"]
    minimal = onnx.load(bundle / "minimal.onnx")
    assert len(minimal.graph.node) <= 3 and "Pad" in {n.op_type for n in minimal.graph.node}
    # a fresh process, only the raw converter: the mismatch reproduces and the exit code says so
    run = subprocess.run([sys.executable, "repro.py"], cwd=bundle, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 1 and "MISMATCH" in run.stdout, run.stdout + run.stderr
    assert "import fwconv" not in (bundle / "repro.py").read_text()
    report = (bundle / "REPORT.md").read_text()
    assert "Pad(mode=constant" in report and "onnx-opset-upgrade" in report and "onnx2tf" in report
    for name in os.listdir(bundle):  # nothing refers to the user's paths
        assert str(work).encode() not in (bundle / name).read_bytes(), name
    # the same subgraph through fwconv: its repair makes it pass
    fixed = invoke("onnx2tflite", bundle / "minimal.onnx", "-o", work / "fixed.tflite", "--no-latency")
    assert fixed.exit_code == 0 and "repaired by onnx-opset-upgrade" in fixed.output, fixed.output


def test_a_fault_planted_in_the_converter_reduces_to_the_node_it_touches(tmp_path, monkeypatch):
    """The converter made to get one Conv wrong (its weight x1.5 on the way in): the search lands there."""
    import onnx
    from onnx import numpy_helper

    from fwconv.convert.reduce import converter_settings, reduce_onnx, repro_onnx2tf

    onnx_path = chain_with_pad2(str(tmp_path / "clean.onnx"), pad_after=None)
    real_convert = repro_onnx2tf.convert

    def faulty_convert(path, out_dir, settings):
        model = onnx.load(path)
        for init in model.graph.initializer:
            if init.name == "w5":
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, "w5"))
        onnx.save(model, path)
        return real_convert(path, out_dir, settings)

    monkeypatch.setattr(repro_onnx2tf, "convert", faulty_convert)
    converter, settings = converter_settings(None)
    found = reduce_onnx(onnx_path, settings, converter=converter, budget=300)
    assert found.status == "reduced", found
    assert found.nodes == [("Conv", "conv5")], found.nodes


def test_a_clean_pair_has_nothing_to_reduce(tmp_path):
    onnx_path = chain_with_pad2(str(tmp_path / "clean.onnx"), pad_after=None)
    assert invoke("onnx2tflite", onnx_path, "-o", tmp_path / "clean.tflite", "--no-latency").exit_code == 0
    result = invoke("debug", onnx_path, tmp_path / "clean.tflite", "--reduce")
    assert result.exit_code == 0, result.output
    assert "nothing to reduce" in result.output
    assert not os.path.exists(tmp_path / "clean.tflite.repro")


def test_reduce_needs_an_onnx_reference_and_says_so_in_one_line(refused, tmp_path):
    work, _, candidate = refused
    result = invoke("debug", candidate, candidate, "--reduce", "-o", tmp_path / "b")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("fwconv: error")]
    assert len(errors) == 1 and "--reduce cuts an ONNX graph" in errors[0]
    assert not (tmp_path / "b").exists()


PAD_NET = '''
import torch


class PadNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 4, 3)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        y = torch.nn.functional.pad(y, (1, 1, 1, 1), value=1.5)
        return torch.sigmoid(self.conv2(y))


def build_model():
    torch.manual_seed(0)
    return PadNet().eval()
'''


def test_reduce_on_a_failing_pytorch_conversion_cuts_its_own_onnx_export(tmp_path):
    """torch2tflite through the TorchScript exporter at opset 10 (a Pad-2 with value 1.5, which
    onnx2tf pads with zeros), repairs off: the refusal comes with a bundle cut from the route's export."""
    import onnx

    (tmp_path / "padnet.py").write_text(PAD_NET)
    out = tmp_path / "out" / "pad.tflite"
    out.parent.mkdir()
    result = invoke("torch2tflite", f"{tmp_path / 'padnet.py'}:build_model", "--input-shape", "1,3,10,12", "--via",
                    "onnx", "--exporter", "torchscript", "--opset", "10", "--no-repair", "--reduce", "-o", out,
                    "--no-latency")
    assert result.exit_code == 3, result.output
    assert "reduce: 5 ONNX nodes -> 1 (Pad)" in result.output, result.output
    assert sorted(os.listdir(out.parent)) == ["pad.tflite.repro"]  # the artifact refused, the bundle kept
    assert [n.op_type for n in onnx.load(out.parent / "pad.tflite.repro" / "minimal.onnx").graph.node] == ["Pad"]
    again = invoke("torch2tflite", f"{tmp_path / 'padnet.py'}:build_model", "--input-shape", "1,3,10,12", "--via",
                   "onnx", "--exporter", "torchscript", "--opset", "10", "--no-repair", "--reduce", "-o", out)
    assert again.exit_code == 2 and "pad.tflite.repro" in again.output, again.output  # exists: --force to replace


def test_gate_reduce_leaves_a_bundle_beside_the_refused_artifact(tmp_path):
    import json
    import re

    source = chain_with_pad2(str(tmp_path / "chain.onnx"))
    (tmp_path / "gate.toml").write_text(f"""
[gate]
output_dir = "out"
repair = false
reduce = true

[[model]]
name = "chain"
source = "{source}"
targets = ["tflite"]
latency = false
""")
    result = invoke("gate", tmp_path / "gate.toml", "--json", tmp_path / "g.json")
    assert result.exit_code == 3, result.output
    (job,) = json.loads((tmp_path / "g.json").read_text())["results"]
    bundles = [os.path.join(d, n) for d, dirs, _ in os.walk(tmp_path / "out") for n in dirs if n.endswith(".repro")]
    assert len(bundles) == 1 and os.path.isfile(os.path.join(bundles[0], "repro.py")), (bundles, job)
    assert re.search(r"reduce: \d+ ONNX nodes -> 1 \(Pad\)", json.dumps(job)), job


def test_debug_reduce_with_a_pytorch_reference_cuts_its_onnx_export(tmp_path):
    """The reference a PyTorch module: exported by fwconv's ONNX edge with the exporter and opset the
    kept candidate's manifest records, then reduced like any ONNX source."""
    import onnx

    (tmp_path / "padnet.py").write_text(PAD_NET)
    factory, kept = f"{tmp_path / 'padnet.py'}:build_model", tmp_path / "kept.tflite"
    made = invoke("torch2tflite", factory, "--input-shape", "1,3,10,12", "--via", "onnx", "--exporter", "torchscript",
                  "--opset", "10", "--no-repair", "--keep-failed", "-o", kept, "--no-latency")
    assert made.exit_code == 3, made.output
    result = invoke("debug", factory, kept, "--input-shape", "1,3,10,12", "--reduce", "-o", tmp_path / "bundle")
    assert result.exit_code == 3 and "reduce: 5 nodes -> 1 (Pad)" in result.output, result.output
    assert [n.op_type for n in onnx.load(tmp_path / "bundle" / "minimal.onnx").graph.node] == ["Pad"]


def test_onnx2torch_refusal_reduces_and_its_repro_runs_onnx2torch_alone(tmp_path):
    """The same opset-10 Pad converted to PyTorch (onnx2torch ignores `value` too), repairs off: the
    bundle's repro.py calls onnx2torch alone. onnx2torch imports torchvision, which this machine
    does not install (its registry build is CUDA-only): the repro runs with an empty stand-in
    package on its path, as a maintainer's environment would have the real one."""
    source = chain_with_pad2(str(tmp_path / "chain.onnx"))
    out = tmp_path / "chain.pt"
    result = invoke("convert", source, "--to", "torch", "-o", out, "--no-repair", "--reduce", "--no-latency")
    assert result.exit_code == 3, result.output
    assert "reduce: 42 ONNX nodes -> 1 (Pad)" in result.output and "runs onnx2torch alone" in result.output
    bundle = tmp_path / "chain.pt.repro"
    assert "# onnx2torch: Pad" in (bundle / "REPORT.md").read_text()
    stand_in = tmp_path / "stand_in" / "torchvision"
    (stand_in / "ops").mkdir(parents=True)
    (stand_in / "__init__.py").write_text("")
    (stand_in / "ops" / "__init__.py").write_text("def nms(*a):\n    raise NotImplementedError\n"
                                                  "def roi_align(*a):\n    raise NotImplementedError\n")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(stand_in.parent)}
    run = subprocess.run([sys.executable, "repro.py"], cwd=bundle, capture_output=True, text=True, timeout=300,
                         env=env)
    assert run.returncode == 1 and "MISMATCH" in run.stdout, run.stdout + run.stderr
    bare = subprocess.run([sys.executable, "repro.py"], cwd=bundle, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert bare.returncode == 2 and "cannot run" in bare.stdout, bare.stdout  # a missing package is not the bug
