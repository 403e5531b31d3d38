"""ONNX's own backend node tests as fwconv's ONNX -> TFLite conformance suite.

The onnx package ships them: `onnx/backend/test/data/pytorch-converted` (82) and
`pytorch-operator` (35), each a model.onnx with inputs and the expected outputs. Every one either
converts and the .tflite, run here in the plain LiteRT interpreter on the test's inputs, gives the
test's expected outputs (fwconv's own validator is not the judge), or is listed in
EXPECTED_FAILURES and fwconv refuses it with exactly that exit code and one error line.

Most of these graphs are opset 6 / IR 3, which ONNX Runtime no longer runs: fwconv upgrades a
private copy first (convert/onnx_prepare.py), and the manifest must say so.

The fast tests at the bottom check the graph rewrites behind that (opset upgrade, IR 3, PRelu,
strided dilated Conv) against ONNX Runtime on the original graphs.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import re

import numpy as np
import pytest

DATA_SETS = ("pytorch-converted", "pytorch-operator")
TOLERANCE = 1e-4  # max |got - expected| / max |expected|; measured worst here: ~4e-7 (fp32 conv sums)


def _cases() -> list[str]:
    """The test directories, found without importing onnx at collection time."""
    root = importlib.util.find_spec("onnx").submodule_search_locations[0]
    found = [d for s in DATA_SETS for d in glob.glob(os.path.join(root, "backend", "test", "data", s, "test_*"))]
    return sorted(found, key=os.path.basename)


CASES = _cases()

# Each: (exit code, why). All are ops that TFLite's builtin set cannot express, so the converter
# keeps a Select-TF (Flex) op and fwconv refuses to write a model the plain interpreter cannot run;
# the error line must name the Flex ops the reason names.
_POOL3D = "TFLite has no builtin 3-D pooling: onnx2tf emits tf.nn.{}_pool3d, kept as the Select-TF op Flex{}Pool3D"
_DILATED3D = ("onnx2tf builds a dilated 3-D Conv as SpaceToBatchND -> Conv3D -> BatchToSpaceND on 5-D tensors; "
              "TFLite's builtin SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND stop at 4-D, so both stay Flex ops "
              "(FlexSpaceToBatchND, FlexBatchToSpaceND)")
_FLOAT64 = ("float64 Add: TFLite's builtin ADD has no float64 kernel, so it stays the Select-TF op FlexAddV2 "
            "(fwconv does not silently narrow a float64 model to float32)")
EXPECTED_FAILURES: dict[str, tuple[int, str]] = {
    "test_AvgPool3d": (5, _POOL3D.format("avg", "Avg")),
    "test_AvgPool3d_stride": (5, _POOL3D.format("avg", "Avg")),
    "test_AvgPool3d_stride1_pad0_gpu_input": (5, _POOL3D.format("avg", "Avg")),
    "test_MaxPool3d": (5, _POOL3D.format("max", "Max")),
    "test_MaxPool3d_stride": (5, _POOL3D.format("max", "Max")),
    "test_MaxPool3d_stride_padding": (5, _POOL3D.format("max", "Max")),
    "test_Conv3d_dilated": (5, _DILATED3D),
    # fwconv first splits strides from dilations (Conv stride 1 + strided Slice, which onnx2tf can
    # build), then it is the dilated 3-D Conv above.
    "test_Conv3d_dilated_strided": (5, _DILATED3D),
    "test_operator_add_broadcast": (5, _FLOAT64),
    "test_operator_add_size1_broadcast": (5, _FLOAT64),
    "test_operator_add_size1_right_broadcast": (5, _FLOAT64),
    "test_operator_add_size1_singleton_broadcast": (5, _FLOAT64),
    "test_operator_addconstant": (5, _FLOAT64),
}


def load_case(case: str) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The test's inputs keyed by the graph's (non-initializer) input names, and its expected outputs."""
    import onnx
    from onnx import numpy_helper

    def tensors(kind: str) -> list[np.ndarray]:
        paths = sorted(glob.glob(os.path.join(case, "test_data_set_0", f"{kind}_*.pb")),
                       key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))
        return [numpy_helper.to_array(onnx.load_tensor(p)) for p in paths]

    graph = onnx.load(os.path.join(case, "model.onnx")).graph
    init = {i.name for i in graph.initializer}
    names = [v.name for v in graph.input if v.name not in init]
    return dict(zip(names, tensors("input"))), tensors("output")


def relative_error(expected: np.ndarray, got: np.ndarray) -> float:
    """max |got - expected| / max |expected| over the finite expected values; a NaN or inf the
    test expects (sqrt of a negative) must come out exactly; a shape mismatch is inf."""
    if tuple(got.shape) != tuple(expected.shape):
        return float("inf")
    ref, cand = expected.astype(np.float64), got.astype(np.float64)
    finite = np.isfinite(ref)
    if not np.array_equal(ref[~finite], cand[~finite], equal_nan=True):
        return float("inf")
    if not finite.any():
        return 0.0
    return float(np.abs(cand[finite] - ref[finite]).max() / max(float(np.abs(ref[finite]).max()), 1e-12))


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def opset_of(path: str) -> int:
    import onnx

    return next(o.version for o in onnx.load(path).opset_import if o.domain in ("", "ai.onnx"))


def run_artifact(path: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The .tflite in plain LiteRT, wired by the manifest's interface (source name -> signature
    key, with any transpose); outputs in the ONNX graph's order."""
    from conftest import run_litert

    with open(path + ".fwconv.json") as f:
        interface = json.load(f)["extra"]["interface"]
    feed = {}
    for b in interface["inputs"]:
        feed[b["name"]] = inputs[b["source"]].transpose(b["transpose"]) if b["transpose"] else inputs[b["source"]]
    got = run_litert(path, feed)
    outs = []
    for b in interface["outputs"]:
        y = got[b["name"]]
        outs.append(y.transpose(np.argsort(b["transpose"])) if b["transpose"] else y)
    return outs


@pytest.mark.slow
def test_the_suite_is_all_there():
    assert len(CASES) == 117, "the onnx package's pytorch node tests changed: review EXPECTED_FAILURES"
    assert set(EXPECTED_FAILURES) <= {os.path.basename(c) for c in CASES}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=os.path.basename)
def test_onnx_node_test(case, tmp_path):
    inputs, expected = load_case(case)
    npz = str(tmp_path / "inputs.npz")
    np.savez(npz, **inputs)  # keeps the test's shapes and dtypes
    source, out = os.path.join(case, "model.onnx"), str(tmp_path / "model.tflite")
    before = sha256(source)
    name = os.path.basename(case)
    if name in EXPECTED_FAILURES:
        _expect_failure(source, out, npz, *EXPECTED_FAILURES[name])
    else:
        _expect_correct(source, out, npz, inputs, expected)
    assert sha256(source) == before, "the user's .onnx was modified"


def _expect_correct(source: str, out: str, npz: str, inputs, expected) -> None:
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert
    from fwconv.validators.compare import ValidateSettings

    # fwconv validates (its default), without latency timing: the test does its own check below.
    convert(source, "tflite", out, ConvertOptions(inputs=npz), ValidateSettings(latency=None))
    got = run_artifact(out, inputs)
    assert len(got) == len(expected)
    for i, (want, have) in enumerate(zip(expected, got)):
        assert relative_error(want, have) <= TOLERANCE, f"output {i}: {relative_error(want, have):.3g}"
    with open(out + ".fwconv.json") as f:
        manifest = json.load(f)
    if opset_of(source) < 7:
        stages = {s["stage"]: s for s in manifest["stages"]}
        assert stages["prepare:opset"]["detail"].startswith(f"opset {opset_of(source)} -> 13")
        assert any("upgraded to 13" in n and "source file is unchanged" in n for n in manifest["notes"])


def _expect_failure(source: str, out: str, npz: str, code: int, reason: str) -> None:
    from click.testing import CliRunner

    from fwconv.cli import main

    result = CliRunner().invoke(main, ["onnx2tflite", source, "-o", out, "--inputs", npz])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, f"{reason}: got exit {result.exit_code}: {result.output[-500:]}"
    assert len(lines) == 1 and lines[0].startswith("fwconv: error: "), result.stderr
    assert all(op in lines[0] for op in re.findall(r"Flex[A-Za-z0-9]+", reason)), lines[0]
    assert not os.path.exists(out) and not os.path.exists(out + ".fwconv.json")


@pytest.mark.slow
def test_upgraded_copy_is_private_and_removed(tmp_path, monkeypatch):
    """The opset upgrade writes a copy (never the user's file) and nothing is left behind."""
    import gc
    import tempfile

    case = next(c for c in CASES if c.endswith("test_PReLU_2d_multiparam"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    inputs, expected = load_case(case)
    np.savez(tmp_path / "inputs.npz", **inputs)
    source, out = os.path.join(case, "model.onnx"), str(tmp_path / "out" / "m.tflite")
    before = (sha256(source), os.stat(source).st_mtime_ns)
    _expect_correct(source, out, str(tmp_path / "inputs.npz"), inputs, expected)
    gc.collect()
    assert (sha256(source), os.stat(source).st_mtime_ns) == before
    assert os.listdir(scratch) == []


# -- The rewrites, checked against ONNX Runtime on the original graph (fast) -------------------
def _graph(nodes, inputs, outputs, inits=(), opset=13, ir=7):
    from onnx import TensorProto, helper, numpy_helper

    vi = lambda n, shape, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, shape)
    graph = helper.make_graph(nodes, "g", [vi(n, s) for n, s in inputs], [vi(n, s) for n, s in outputs],
                              [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def _ort(model, feed):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def test_opset6_ir3_graph_is_brought_forward():
    """Pad-2's `value` and a per-channel opset-6 PRelu survive the upgrade; the IR moves on, so
    the adapters' new initializers are legal; weights stop being listed as inputs."""
    import onnx
    from onnx import helper

    from fwconv.convert.onnx_prepare import modernize

    slope = np.array([0.1, 0.2, 0.3], np.float32)
    nodes = [helper.make_node("Pad", ["x"], ["p"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=2.0),
             helper.make_node("PRelu", ["p", "s"], ["y"])]
    model = _graph(nodes, [("x", [1, 3, 2, 1]), ("s", [3])], [("y", [1, 3, 4, 3])], [("s", slope)], opset=6, ir=3)
    upgraded, details = modernize(model, 13)
    assert upgraded is not None, details
    onnx.checker.check_model(upgraded)
    assert upgraded.ir_version >= 7 and [i.name for i in upgraded.graph.input] == ["x"]
    x = np.random.default_rng(0).standard_normal((1, 3, 2, 1)).astype(np.float32) - 3
    padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)], constant_values=2.0)
    want = np.where(padded < 0, padded * slope.reshape(3, 1, 1), padded)  # per channel, though W == C
    np.testing.assert_allclose(_ort(upgraded, {"x": x})[0], want, rtol=1e-6)


@pytest.mark.parametrize("x_shape, slope_shape", [([2, 3, 4, 5], [3, 1, 1]), ([2, 3, 4, 5, 6], [1]),
                                                  ([2, 3, 4], [3, 1]), ([2, 3, 4, 5], [5])])
def test_prelu_decomposition_is_exact(x_shape, slope_shape):
    from onnx import helper

    from fwconv.convert.onnx_prepare import decompose_prelu

    rng = np.random.default_rng(1)
    slope = rng.standard_normal(slope_shape).astype(np.float32)
    model = _graph([helper.make_node("PRelu", ["x", "s"], ["y"])], [("x", x_shape)], [("y", x_shape)], [("s", slope)])
    x = rng.standard_normal(x_shape).astype(np.float32)
    want = _ort(model, {"x": x})[0]
    changed = decompose_prelu(model)
    assert changed == (0 if slope_shape == [5] else 1)  # a last-axis slope on rank 4 keeps the builtin
    np.testing.assert_array_equal(_ort(model, {"x": x})[0], want)


@pytest.mark.parametrize("spatial, strides, dilations, pads", [
    ([11], [2], [2], [1, 1]), ([8, 9], [2, 3], [2, 2], [1, 0, 2, 1]), ([7, 6, 8], [2, 2, 2], [2, 1, 2], [1] * 6)])
def test_strided_dilated_conv_split_is_exact(spatial, strides, dilations, pads):
    from onnx import helper

    from fwconv.convert.onnx_prepare import split_strided_dilated_convs

    rng = np.random.default_rng(2)
    kernel = rng.standard_normal([4, 3] + [3] * len(spatial)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=strides, dilations=dilations, pads=pads)
    model = _graph([node], [("x", [2, 3] + spatial)], [("y", None)], [("w", kernel)])
    x = rng.standard_normal([2, 3] + spatial).astype(np.float32)
    want = _ort(model, {"x": x})[0]
    assert split_strided_dilated_convs(model) == 1
    got = _ort(model, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unnamed_and_duplicate_nodes_get_unique_names():
    from onnx import helper

    from fwconv.convert.onnx_prepare import name_nodes

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"], name="r"),
             helper.make_node("Relu", ["b"], ["c"], name="r"), helper.make_node("Relu", ["c"], ["y"], name="Relu_0")]
    model = _graph(nodes, [("x", [2])], [("y", [2])])
    assert name_nodes(model) == 2
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == 4 and names[1] == "r" and names[3] == "Relu_0"


@pytest.mark.parametrize("spatial, kernel, strides, dilations, pads", [
    ([40], [5], [6], [3], [3, 2]), ([30, 33], [3, 4], [2, 6], [2, 3], [2, 3, 1, 2]), ([20], [4], [2], [2], [0, 0]),
    ([41], [4], [3], [3], [0, 3]), ([2200], [200], [10], [10], [100, 100])])
def test_dilated_max_pool_rewrite_is_exact(spatial, kernel, strides, dilations, pads):
    from onnx import helper

    from fwconv.convert.onnx_prepare import undilate_max_pools

    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=kernel, strides=strides, dilations=dilations,
                            pads=pads)
    model = _graph([node], [("x", [2, 3] + spatial)], [("y", None)])
    x = np.random.default_rng(3).standard_normal([2, 3] + spatial).astype(np.float32)
    want = _ort(model, {"x": x})[0]
    assert undilate_max_pools(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MaxPool", "MaxPool"]
    np.testing.assert_array_equal(_ort(model, {"x": x})[0], want)


@pytest.mark.parametrize("image, block, strides, fold", [
    ([4, 6], [2, 2], [2, 2], True), ([6, 9], [3, 3], None, True), ([6, 6], [2, 3], [2, 3], True),
    ([5, 5], [2, 2], [1, 1], False)])
def test_non_overlapping_col2im_becomes_reshape_transpose_exactly(image, block, strides, fold):
    """MobileViT's `fold` (blocks tiling the image) becomes Reshape/Transpose/Reshape with the same
    values; overlapping blocks (stride 1) keep the Col2Im."""
    from onnx import helper

    from fwconv.convert.onnx_prepare import fold_col2im

    strides = strides or block
    channels, blocks = 3, ((image[0] - block[0]) // strides[0] + 1) * ((image[1] - block[1]) // strides[1] + 1)
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"], **({"strides": strides} if strides != [1, 1] else {}))
    consts = [("image", np.array(image, np.int64)), ("block", np.array(block, np.int64))]
    shape = [2, channels * block[0] * block[1], blocks]
    model = _graph([node], [("x", shape)], [("y", None)], consts, opset=18)
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    want = _ort(model, {"x": x})[0]
    assert fold_col2im(model) == int(fold)
    assert ("Col2Im" in [n.op_type for n in model.graph.node]) != fold
    np.testing.assert_array_equal(_ort(model, {"x": x})[0], want)


@pytest.mark.slow
def test_mobilevitv2_through_onnx2tf_in_minutes_and_right(tmp_path):
    """transformers' MobileViT-v2 by the ONNX route: its fold (Col2Im) is rewritten before onnx2tf,
    whose own Col2Im (nested tf.map_fn, re-run by strict mode at every later Reshape and
    normalization) kept the convert stage busy for over 10 minutes. Under a 5-minute stage limit it
    converts, and the .tflite matches PyTorch in LiteRT, run here."""
    from conftest import run_litert, run_torch, scaled_error

    from fwconv.convert.pipeline import convert
    from fwconv.options import Options

    factory = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "thirdparty.py") + ":build_mobilevitv2"
    out = tmp_path / "mobilevitv2.tflite"
    options = Options(via="onnx", input_shape=("1,3,64,64",), stage_timeout=300, latency=False)
    result = convert(factory, "tflite", str(out), options)
    stages = {s["stage"]: s for s in result.manifest.stages}
    assert "Col2Im -> Reshape + Transpose + Reshape" in stages["prepare:onnx2tf"]["detail"]
    assert stages["convert:onnx2tf"]["seconds"] < 300
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    (want,) = run_torch(factory, {"x": x})
    (got,) = run_litert(str(out), {result.manifest.inputs[0].name: x}).values()
    assert scaled_error(want, got.reshape(want.shape)) < 1e-3
