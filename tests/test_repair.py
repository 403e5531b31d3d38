"""Route repair: a model onnx2tf converts wrongly with default settings comes out right through a
repair, and the repair is recorded; without repair (or out of budget) it is still refused.

The model is ONNX's own node test `ConstantPad2d` (pytorch-converted), stamped opset 10 by ONNX's
version converter: its Pad keeps the Pad-2 `value` attribute, which onnx2tf ignores (it pads
with zeros). The .tflite is run in the plain LiteRT interpreter inside the test and compared with
the node test's own expected output, not with fwconv's verdict.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import invoke, run_litert, scaled_error


def _node_test(name: str) -> str:
    import importlib.util

    root = importlib.util.find_spec("onnx").submodule_search_locations[0]
    return os.path.join(root, "backend", "test", "data", "pytorch-converted", name)


@pytest.fixture(scope="module")
def pad_opset10(tmp_path_factory):
    """(model path, inputs, expected output) of ConstantPad2d at opset 10."""
    import onnx
    from onnx import numpy_helper, version_converter

    case = _node_test("test_ConstantPad2d")
    model = version_converter.convert_version(onnx.load(os.path.join(case, "model.onnx")), 10)
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    assert any(a.name == "value" and a.f != 0 for a in pad.attribute)  # the attribute onnx2tf misreads
    path = tmp_path_factory.mktemp("pad") / "constant_pad_opset10.onnx"
    onnx.save(model, str(path))
    read = lambda f: numpy_helper.to_array(onnx.load_tensor(os.path.join(case, "test_data_set_0", f)))
    return str(path), {model.graph.input[0].name: read("input_0.pb")}, read("output_0.pb")


@pytest.mark.slow
def test_repair_turns_a_misconversion_into_a_correct_artifact(pad_opset10, tmp_path):
    src, feed, expected = pad_opset10
    refused = invoke("onnx2tflite", src, "-o", tmp_path / "plain.tflite", "--no-repair", "--no-latency")
    assert refused.exit_code == 3, refused.output  # onnx2tf's default conversion is wrong
    out = tmp_path / "repaired.tflite"
    result = invoke("onnx2tflite", src, "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    assert "repaired by onnx-opset-upgrade" in result.output
    from ai_edge_litert.interpreter import Interpreter

    key = Interpreter(model_path=str(out)).get_signature_list()["serving_default"]["inputs"][0]
    got = list(run_litert(str(out), {key: next(iter(feed.values()))}).values())[0]
    assert scaled_error(expected, got) <= 1e-5  # the node test's own expected output
    manifest = json.loads((tmp_path / "repaired.tflite.fwconv.json").read_text())
    repairs = manifest["extra"]["repairs"]
    assert repairs[0]["repair"] == "onnx-opset-upgrade" and repairs[0]["status"] == "pass"
    assert repairs[0]["aimed_at_first_divergence"] is True  # the debugger pointed at the Pad
    assert "repair onnx-opset-upgrade" in manifest["extra"]["chosen_route"]
    assert any(s["stage"] == "prepare:opset-upgrade" for s in manifest["stages"])


@pytest.mark.slow
def test_repair_budget_bounds_the_attempts(pad_opset10, tmp_path):
    src, _, _ = pad_opset10
    result = invoke("onnx2tflite", src, "-o", tmp_path / "x.tflite", "--repair-budget", "0.000001", "--no-latency",
                    "--keep-failed")
    assert result.exit_code == 3
    manifest = json.loads((tmp_path / "x.tflite.fwconv.json").read_text())
    assert all(r["status"].startswith("skipped") for r in manifest["extra"]["repairs"])
    assert invoke("onnx2tflite", src, "--repair-budget", "-1").exit_code == 2


@pytest.mark.slow
def test_a_planted_fault_is_not_repaired_away(tmp_path):
    """A tolerance no conversion meets: every repair is tried and reported, none passes, exit 3
    and no artifact (a repair never loosens the verdict)."""
    import importlib.util

    src = os.path.join(_node_test("test_Conv2d"), "model.onnx")
    out = tmp_path / "conv.tflite"
    result = invoke("onnx2tflite", src, "-o", out, "--atol", "1e-15", "--rtol", "0", "--no-latency")
    assert result.exit_code == 3
    assert "repairs tried, none passed" in result.output and not out.exists()
    assert importlib.util.find_spec("fwconv.convert.repair") is not None


def test_plan_is_aimed_by_the_first_divergence():
    from fwconv.convert.edges import all_edges
    from fwconv.convert.edges.onnx_to_tf import Onnx2TfSettings
    from fwconv.convert.edges.torch_to_onnx import ExportSettings
    from fwconv.convert.repair import plan, resolve

    edges = {(e.src, e.dst): e for e in all_edges()}
    onnx_route = [edges["onnx", "tflite"]]
    default = [r.name for r in plan(onnx_route)]
    assert default[0] == "onnx-opset-upgrade" and "other-exporter" not in default
    matmul = {"reference": {"op_type": "MatMul"}, "candidate": {"op_type": "BATCH_MATMUL"}}
    assert plan(onnx_route, matmul)[0].name == "batchmatmul-unfold"
    torch_route = [edges["torch", "onnx"], edges["onnx", "tflite"]]
    other = next(r for r in plan(torch_route) if r.name == "other-exporter")
    # the exporter that ran is a field of the settings the attempt used, not a parsed stage label
    ran_dynamo = {ExportSettings: ExportSettings("dynamo")}
    assert resolve(other, ran_dynamo, "exported") == {ExportSettings: ExportSettings("torchscript")}
    assert resolve(other, {ExportSettings: ExportSettings("torchscript")}, "torchscript") is None  # one exporter there
    upgrade = next(r for r in plan(onnx_route) if r.name == "onnx-opset-upgrade")
    assert resolve(upgrade, {Onnx2TfSettings: Onnx2TfSettings()}, None) == {Onnx2TfSettings: Onnx2TfSettings(opset_upgrade=13)}
