"""`fwconv debug`: planted faults must be found, named on both sides, and a clean conversion
must report none. Every model here runs in its own runtime (ONNX Runtime, LiteRT, PyTorch,
TensorFlow) inside the debugger; the faults are planted by the tests, not assumed.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import invoke

CNN = "fixtures/models.py:build_cnn"
CNN_SHAPE = ("--input-shape", "1,3,32,32")
FAULTY_FACTORY = """
import sys
sys.path.insert(0, {repo!r})
import torch
from fixtures.models import build_cnn

def build():
    model = build_cnn()
    with torch.no_grad():
        model.features[4].weight[3, 2, 1, 1] += 1.0  # one weight of the second conv (features.4)
    return model
"""


def _debug(reference, candidate, *options):
    from fwconv.specs import specs_from_options
    from fwconv.validators.compare import ValidateSettings
    from fwconv.validators.debug import DebugSettings, debug

    specs = specs_from_options(("1,3,32,32",), ()) if "factory" in str(reference) or ".py:" in str(reference) else None
    settings = DebugSettings(ValidateSettings(latency=None), isolate="isolate" in options)
    return debug(str(reference), str(candidate), settings=settings, ref_specs=specs)


@pytest.fixture(scope="module")
def faulty_factory(tmp_path_factory):
    from conftest import REPO

    path = tmp_path_factory.mktemp("faulty") / "faulty_cnn.py"
    path.write_text(FAULTY_FACTORY.format(repo=REPO))
    return f"{path}:build"


@pytest.fixture(scope="module")
def cnn_onnx(convert_cached):
    return convert_cached(CNN, "onnx", input_shape=("1,3,32,32",)).artifact


def _specs():
    from fwconv.specs import specs_from_options

    return specs_from_options(("1,3,32,32",), ())


def _perturb_initializer(src: str, dst: str, consumer_type: str = "Conv", which: int = 1) -> str:
    """Copy of an ONNX model with one weight of the `which`-th `consumer_type` node changed;
    returns that node's name (the op the debugger must name)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
    node = [n for n in model.graph.node if n.op_type == consumer_type][which]
    weights = {t.name: t for t in model.graph.initializer}
    tensor = weights[node.input[1]]
    array = numpy_helper.to_array(tensor).copy()
    array.flat[7] += 1.0
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    onnx.save(model, dst)
    return node.name


@pytest.mark.slow
def test_perturbed_onnx_weight_names_the_consuming_node(cnn_onnx, tmp_path):
    bad = str(tmp_path / "bad.onnx")
    consumer = _perturb_initializer(cnn_onnx, bad)
    report = _debug(cnn_onnx, bad).to_dict()
    first = report["first_divergence"]
    assert report["status"] == "diverged" and first is not None
    assert first["candidate"]["op"] == consumer and first["reference"]["op"] == consumer
    before = [p for p in report["pairs"] if p["index"] < first["pair"]]
    assert before and all(p["within_tolerance"] for p in before)  # everything upstream agrees
    assert first["metrics"]["scaled_max_err"] > 1e-3


@pytest.mark.slow
def test_isolation_mode_marks_only_the_wrong_op(cnn_onnx, tmp_path):
    bad = str(tmp_path / "bad.onnx")
    consumer = _perturb_initializer(cnn_onnx, bad)
    report = _debug(cnn_onnx, bad, "isolate").to_dict()
    assert report["mode"] == "isolated"
    wrong_alone = [p["candidate"]["op"] for p in report["pairs"] if p["isolated"] and not p["isolated"]["within_tolerance"]]
    assert wrong_alone == [consumer]  # downstream ops, fed the reference's inputs, are right
    propagated = [p for p in report["pairs"] if not p["within_tolerance"]]
    assert len(propagated) > 1  # ...while propagated errors reach them


@pytest.mark.slow
@pytest.mark.parametrize("via", ["litert", "onnx"])
def test_fault_behind_torch_to_tflite_names_the_module(faulty_factory, tmp_path, via):
    out = tmp_path / f"faulty_{via}.tflite"
    result = invoke("torch2tflite", faulty_factory, *CNN_SHAPE, "--via", via, "-o", out, "--no-latency")
    assert result.exit_code == 0, result.output
    report = _debug(CNN, out).to_dict()
    first = report["first_divergence"]
    assert first is not None, report["pairs"]
    named = [first["reference"]["module"] or ""] + first["span"]
    assert any("features.4" in n for n in named), first  # the Conv2d owning the perturbed weight
    assert first["candidate"]["op_type"] == "CONV_2D"
    agreeing = [p for p in report["pairs"] if p["index"] < first["pair"]]
    assert agreeing and all(p["within_tolerance"] for p in agreeing)


@pytest.mark.slow
def test_planted_transpose_in_a_converted_graph(cnn_onnx, tmp_path):
    """An H<->W transpose spliced after the first ReLU (square feature maps: shapes unchanged)."""
    import onnx
    from onnx import helper

    model = onnx.load(cnn_onnx)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    planted = helper.make_node("Transpose", [relu.output[0]], ["planted_t"], name="planted_transpose", perm=[0, 1, 3, 2])
    for node in model.graph.node:
        node.input[:] = ["planted_t" if i == relu.output[0] else i for i in node.input]
    index = list(model.graph.node).index(relu)
    model.graph.node.insert(index + 1, planted)
    bad = str(tmp_path / "transposed.onnx")
    onnx.save(model, bad)
    first = _debug(cnn_onnx, bad).to_dict()["first_divergence"]
    assert first is not None
    assert any("planted_transpose" in s for s in first["candidate_span"] + [first["candidate"]["op"]]), first
    assert first["reference"]["op_type"] == "MaxPool"  # the first op fed the transposed map


@pytest.mark.slow
def test_onnx2tf_misconversion_from_the_onnx_node_tests(tmp_path):
    """ONNX's node test ConstantPad2d (opset 6 Pad with a `value`) is converted wrongly by raw
    onnx2tf (it reads the old attribute form wrongly). Embedded between two other ops, the
    debugger must put the divergence on the Pad, not on its neighbours."""
    import importlib.util

    import onnx
    import onnx2tf
    from onnx import helper

    root = importlib.util.find_spec("onnx").submodule_search_locations[0]
    case = onnx.load(os.path.join(root, "backend", "test", "data", "pytorch-converted", "test_ConstantPad2d", "model.onnx"))
    pad = case.graph.node[0]
    x = case.graph.input[0]
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    pad.input[:] = ["relu_out"]
    pad.output[:] = ["pad_out"]
    pad.name = "the_pad"
    nodes = [helper.make_node("Relu", [x.name], ["relu_out"], name="before"), pad,
             helper.make_node("Sigmoid", ["pad_out"], ["y"], name="after")]
    out_shape = [d.dim_value for d in case.graph.output[0].type.tensor_type.shape.dim]
    graph = helper.make_graph(nodes, "padded", [helper.make_tensor_value_info(x.name, onnx.TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out_shape)])
    model = helper.make_model(graph, opset_imports=case.opset_import, ir_version=case.ir_version)
    src = tmp_path / "padded.onnx"
    onnx.save(model, str(src))
    shutil.copy(src, tmp_path / "for_onnx2tf.onnx")  # onnx2tf rewrites the file it reads
    np.save(tmp_path / "calibration_image_sample_data_20x128x128x3_float32.npy", np.zeros((1, 8, 8, 3), np.float32))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        onnx2tf.convert(input_onnx_file_path="for_onnx2tf.onnx", output_folder_path="raw", non_verbose=True)
    finally:
        os.chdir(cwd)
    report = _debug(src, tmp_path / "raw" / "for_onnx2tf_float32.tflite").to_dict()
    first = report["first_divergence"]
    assert first is not None and first["reference"]["op"] == "the_pad", first
    assert first["candidate"]["op_type"] == "PAD"
    assert [p["within_tolerance"] for p in report["pairs"]][0] is True  # the Relu before it agrees


@pytest.mark.slow
@pytest.mark.parametrize("target,via", [("tflite", "litert"), ("tflite", "onnx"), ("onnx", None), ("savedmodel", None)])
def test_clean_conversion_reports_no_divergence(convert_cached, target, via):
    kw = {"via": via} if via else {}
    artifact = convert_cached(CNN, target, input_shape=("1,3,32,32",), **kw).artifact
    report = _debug(CNN, artifact).to_dict()
    assert report["status"] == "clean" and report["first_divergence"] is None
    assert len(report["pairs"]) >= 4 and all(p["within_tolerance"] for p in report["pairs"])


@pytest.mark.slow
def test_fault_found_through_a_savedmodel(convert_cached, cnn_onnx, tmp_path):
    """ONNX reference vs a SavedModel converted from a perturbed copy: TF's frozen graph paired
    with the ONNX nodes (NHWC transposes found from the values)."""
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert

    bad = str(tmp_path / "bad.onnx")
    consumer = _perturb_initializer(cnn_onnx, bad)
    saved = str(tmp_path / "bad_sm")
    convert(bad, "savedmodel", saved, ConvertOptions(), None)
    first = _debug(cnn_onnx, saved).to_dict()["first_divergence"]
    assert first is not None and first["reference"]["op"] == consumer, first


@pytest.mark.slow
def test_third_party_transformer_fault_names_its_layer(tmp_path):
    """A transformers BERT (random weights): one attention weight of layer 1 perturbed behind
    litert-torch; the clean conversion has no divergence, the faulty one points into layer 1."""
    factory = tmp_path / "bert_factory.py"
    from conftest import REPO

    factory.write_text(f"""
import sys
sys.path.insert(0, {REPO!r})
import torch
from fixtures.thirdparty import build_bert

def build():
    model = build_bert()
    with torch.no_grad():
        model.encoder.layer[1].attention.self.value.weight[5, 3] += 0.5  # one element (a whole row would cancel: LayerNorm output sums to 0)
    return model
""")
    shapes = ("--input-shape", "1,16", "--input-dtype", "int64")
    bad = tmp_path / "bert_bad.tflite"
    assert invoke("torch2tflite", f"{factory}:build", *shapes, "--via", "litert", "-o", bad, "--no-latency").exit_code == 0
    from fwconv.specs import specs_from_options
    from fwconv.validators.compare import ValidateSettings
    from fwconv.validators.debug import DebugSettings, debug

    specs = specs_from_options(("1,16",), ("int64",))
    report = debug("fixtures/thirdparty.py:build_bert", str(bad), ref_specs=specs,
                   settings=DebugSettings(ValidateSettings(latency=None))).to_dict()
    first = report["first_divergence"]
    assert first is not None
    named = [first["reference"]["module"] or ""] + first["span"]
    assert any("encoder.layer.1.attention" in n for n in named), first
    assert not any("encoder.layer.0" in n for n in named)


@pytest.mark.slow
def test_cli_debug_reports_and_exit_codes(cnn_onnx, tmp_path):
    bad = str(tmp_path / "bad.onnx")
    consumer = _perturb_initializer(cnn_onnx, bad)
    out_json, explorer = tmp_path / "d.json", tmp_path / "me.json"
    result = invoke("debug", cnn_onnx, bad, "--json", out_json, "--model-explorer", explorer, "--no-latency")
    assert result.exit_code == 3, result.output
    assert "FIRST DIVERGENCE" in result.output and consumer in result.output
    data = json.loads(out_json.read_text())
    assert data["schema"] == "fwconv.debug" and data["schema_version"] == 1
    assert data["first_divergence"]["candidate"]["op"] == consumer
    node_data = json.loads(explorer.read_text())  # Model Explorer's GraphNodeData
    assert set(node_data) >= {"results", "thresholds"}
    assert all(set(v) == {"value"} for v in node_data["results"].values())
    clean = invoke("debug", cnn_onnx, cnn_onnx, "--json", tmp_path / "c.json", "--no-latency")
    assert clean.exit_code == 0, clean.output
    assert json.loads((tmp_path / "c.json").read_text())["first_divergence"] is None
    refused = invoke("debug", cnn_onnx, bad, "--json", bad)  # a report path that is an input
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_debug_on_failure_writes_the_layerwise_report(tmp_path):
    """A conversion that fails parity (a tolerance no fp32 conversion meets) with
    --debug-on-failure: exit 3, no artifact, and ARTIFACT.debug.json naming the first op out."""
    out = tmp_path / "cnn.tflite"
    result = invoke("torch2tflite", CNN, *CNN_SHAPE, "--via", "litert", "--atol", "1e-12", "--rtol", "0",
                    "--debug-on-failure", "-o", out, "--no-latency")
    assert result.exit_code == 3, result.output
    assert not out.exists()
    data = json.loads((tmp_path / "cnn.tflite.debug.json").read_text())
    assert data["first_divergence"]["pair"] == 0
    assert data["candidate"]["model"] == str(out)  # the output asked for, not a staging path


@pytest.mark.slow
def test_gate_debug_on_failure(tmp_path):
    from conftest import REPO

    config = tmp_path / "gate.toml"
    config.write_text(f"""
[gate]
output_dir = "out"
atol = 1e-12
rtol = 0
debug_on_failure = true

[[model]]
name = "cnn"
source = "{REPO}/fixtures/models.py:build_cnn"
input_shape = ["1,3,32,32"]
targets = ["onnx"]
""")
    result = invoke("gate", config, "--json", tmp_path / "g.json")
    assert result.exit_code == 3, result.output
    job = json.loads((tmp_path / "g.json").read_text())["results"][0]
    assert job["debug"]["first_divergence"] is not None
    assert os.path.exists(job["debug"]["reports"][0])


def test_views_and_pairing_units():
    """The pairing on synthetic tensors: an NHWC copy is found by values, a fused op leaves the
    pre-activation tensor unpaired, and a window is aligned only after a failing anchor."""
    from fwconv.validators.debug.pairing import pair_intermediates
    from fwconv.validators.debug.views import best_view, views
    from fwconv.validators.runners.base import Intermediate

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 4, 4)).astype(np.float32)
    assert [v.perm for v in views((1, 4, 4, 4), (1, 4, 4, 4))] == [None, (0, 2, 3, 1)]  # square: both tried
    view, err = best_view(x, x.transpose(0, 2, 3, 1))
    assert view.perm == (0, 2, 3, 1) and err == 0.0
    conv = Intermediate("conv", "conv", "Conv", ["x"], x)
    relu = Intermediate("relu", "relu", "Relu", ["conv"], np.maximum(x, 0))
    out = Intermediate("out", "out", "Sigmoid", ["relu"], 1 / (1 + np.exp(-np.maximum(x, 0))))
    fused = Intermediate("t0", "CONV_2D#0", "CONV_2D", ["in"], np.maximum(x, 0).transpose(0, 2, 3, 1))
    last = Intermediate("t1", "LOGISTIC#1", "LOGISTIC", ["t0"], out.value.transpose(0, 2, 3, 1))
    pairs = pair_intermediates([conv, relu, out], [fused, last], agrees=lambda p: p.error < 1e-4, loose=1e-2)
    assert [(p.ref, p.cand, p.how) for p in pairs] == [(1, 0, "values"), (2, 1, "values")]
    wrong = Intermediate("t1", "LOGISTIC#1", "LOGISTIC", ["t0"], (out.value * 0.5).transpose(0, 2, 3, 1))
    pairs = pair_intermediates([conv, relu, out], [fused, wrong], agrees=lambda p: p.error < 1e-4, loose=1e-2,
                               outputs={2: 1})
    assert [(p.ref, p.how) for p in pairs] == [(1, "values"), (2, "output binding")]


@pytest.mark.slow
def test_real_debug_report_renders_in_headless_chromium(faulty_factory, tmp_path):
    """The HTML of a real debugger run (PyTorch vs a faulty LiteRT artifact), drawn by Chromium:
    every plot rendered, and the page names the module owning the planted weight."""
    from test_html_report import rendered_plots

    out = tmp_path / "faulty.tflite"
    assert invoke("torch2tflite", faulty_factory, *CNN_SHAPE, "--via", "litert", "-o", out, "--no-latency").exit_code == 0
    page = tmp_path / "debug.html"
    result = invoke("debug", CNN, out, *CNN_SHAPE, "--html", page, "--runs", "5")
    assert result.exit_code == 3, result.output
    html = page.read_text()
    assert "features.4" in html and "CONV_2D" in html
    drawn = rendered_plots(page, tmp_path)
    assert set(drawn) == {"fw-error-curve", "fw-tensors", "fw-histograms", "fw-latency"}, drawn
    assert all(n >= 2 for n in drawn.values()), drawn
