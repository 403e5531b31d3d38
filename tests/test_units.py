"""Fast unit tests of the pieces under the commands: route planning and choice, options and
settings built once, calibration parsing, output staging, gate config. No framework runs."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from fwconv.errors import InputError, OutputExistsError


# -- planner ---------------------------------------------------------------------------------

def _labels(src, dst, via="auto"):
    from fwconv.convert.planner import plan_routes, route_label

    return [route_label(r) for r in plan_routes(src, dst, via=via)]


def test_auto_routes_pass_only_through_the_hub():
    assert _labels("torch", "onnx") == ["torch -> onnx"]
    assert _labels("torch", "tflite") == ["torch -> tflite (litert)", "torch -> onnx -> tflite"]
    assert _labels("keras", "torch") == ["keras -> onnx -> torch"]
    assert _labels("torch", "onnx", via="onnx") == ["torch -> onnx"]
    assert _labels("torch", "onnx", via="litert") == ["torch -> tflite -> onnx (litert)"]  # asked for: allowed


def test_planner_refusals():
    with pytest.raises(InputError, match="already onnx"):
        _labels("onnx", "onnx")
    with pytest.raises(InputError, match="unknown target"):
        _labels("torch", "coreml")
    with pytest.raises(InputError, match="via nothing"):
        _labels("torch", "tflite", via="nothing")


def test_edges_declare_why_they_cannot_serve():
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.planner import applicable_routes, plan_routes

    routes = plan_routes("torch", "tflite")
    kept = applicable_routes(routes, "torchscript", ConvertOptions())  # litert-torch needs torch.export
    assert [len(r) for r in kept] == [2]
    with pytest.raises(InputError, match="no route can do this conversion"):
        applicable_routes([routes[0]], "torchscript", ConvertOptions())


# -- route choice ----------------------------------------------------------------------------

@dataclasses.dataclass
class _Stats:
    p50_ms: float
    std_ms: float = 0.0


@dataclasses.dataclass
class _Report:
    p50: float
    parity_passed: bool = True

    @property
    def latency(self):
        return {"candidate": _Stats(self.p50)}


def _try(label, size, p50, tmp_path, passed=True):
    from fwconv.convert.job import Artifact
    from fwconv.convert.route_choice import RouteTry

    path = tmp_path / label
    path.write_bytes(b"x" * size)
    return RouteTry(label, Artifact(str(path), "tflite", [], []), None, _Report(p50, passed))


def test_route_choice_is_fastest_then_smaller_then_earlier(tmp_path):
    from fwconv.convert.route_choice import choose as _choose

    clear = [_try("a", 100, 1.0, tmp_path), _try("b", 50, 2.0, tmp_path)]
    assert _choose(clear).label == "a"  # 2x faster wins whatever the size
    tie = [_try("c", 100, 1.00, tmp_path), _try("d", 50, 1.2, tmp_path)]
    assert _choose(tie).label == "d"  # within 25%: the smaller
    same = [_try("e", 64, 1.0, tmp_path), _try("f", 64, 1.02, tmp_path)]
    assert _choose(same).label == "e"  # same size: the earlier route
    failed = [_try("g", 10, 0.1, tmp_path, passed=False), _try("h", 100, 5.0, tmp_path)]
    assert _choose(failed).label == "h"  # a failed artifact is never kept while one passed


# -- options and settings --------------------------------------------------------------------

def test_convert_options_are_checked_on_construction():
    from fwconv.convert.options import ConvertOptions

    assert ConvertOptions(fp16=True).quantize == "fp16" and ConvertOptions(fp16=True).artifact_precision == "fp16"
    assert ConvertOptions(quantize="dynamic").artifact_precision == "int8"
    for bad, words in (({"fp16": True, "quantize": "int8", "calibration": "c"}, "contradict"),
                       ({"int8_io": True}, "--int8-io"), ({"quantize": "int8"}, "calibration"),
                       ({"via": "carrier-pigeon"}, "unknown via"), ({"opset": 99}, "opset"),
                       ({"outputs": "list"}, "unknown outputs")):
        with pytest.raises(InputError, match=words):
            ConvertOptions(**bad)
    options = ConvertOptions(input_shape=["x:1,3,8,8"], input_dtype=["x:float16"])
    assert options.input_specs[0].shape == [1, 3, 8, 8] and options.input_specs[0].dtype == "float16"


def test_validation_settings_from_one_builder():
    from fwconv.validators.settings import build_settings

    s = build_settings(precision="fp16", atol=1e-3, per_output=["logits=1e-2,1e-3"], input_ranges=["0,1"])
    assert s.tolerance.precision == "fp16" and s.tolerance.atol == 1e-3
    assert (s.per_output["logits"].atol, s.per_output["logits"].rtol) == (1e-2, 1e-3)
    assert build_settings(per_output={"logits": 0.5}).per_output["logits"].atol == 0.5  # the gate's form
    for bad, words in (({"atol": -1}, "negative"), ({"per_output": ["x=-1"]}, "negative"),
                       ({"per_output": {"x": "big"}}, "number"), ({"samples": 0}, "at least 1"),
                       ({"precision": "fp8"}, "unknown precision"), ({"per_output": ["x"]}, "OUTPUT=ATOL")):
        with pytest.raises(InputError, match=words):
            build_settings(**bad)


# -- calibration -----------------------------------------------------------------------------

def test_calibration_layouts(tmp_path):
    from fwconv.convert.calibration import load_calibration
    from fwconv.specs import TensorSpec

    spec = [TensorSpec("x", [2, 3])]
    np.savez(tmp_path / "axis.npz", x=np.zeros((8, 2, 3), np.float32))
    np.savez(tmp_path / "batch.npz", x=np.arange(48, dtype=np.float32).reshape(16, 3))
    assert len(load_calibration(str(tmp_path / "axis.npz"), spec)) == 8
    batch = load_calibration(str(tmp_path / "batch.npz"), spec)
    assert len(batch) == 8 and np.array_equal(batch[1]["x"], np.arange(6, 12).reshape(2, 3))
    np.savez(tmp_path / "odd.npz", x=np.zeros((15, 3), np.float32))  # 15 rows do not split into batches of 2
    with pytest.raises(InputError, match="stacked on the batch axis"):
        load_calibration(str(tmp_path / "odd.npz"), spec)
    np.savez(tmp_path / "few.npz", x=np.zeros((4, 2, 3), np.float32))
    with pytest.raises(InputError, match="at least 8"):
        load_calibration(str(tmp_path / "few.npz"), spec)


# -- staging ---------------------------------------------------------------------------------

def test_staging_publishes_only_on_success(tmp_path):
    from fwconv.staging import staged_outputs

    out = tmp_path / "m.onnx"
    with pytest.raises(RuntimeError):
        with staged_outputs([str(out)], force=False) as temps:
            open(temps[str(out)], "w").write("half")
            raise RuntimeError("converter died")
    assert not out.exists() and os.listdir(tmp_path) == []
    with staged_outputs([str(out)], force=False) as temps:
        open(temps[str(out)], "w").write("whole")
    assert out.read_text() == "whole" and os.listdir(tmp_path) == ["m.onnx"]
    with pytest.raises(OutputExistsError):
        with staged_outputs([str(out)], force=False):
            pass


def test_force_rules(tmp_path):
    from fwconv.staging import check_writable

    mine = tmp_path / "sm"
    mine.mkdir()
    (mine / "fwconv.json").write_text('{"generator": "fwconv"}')
    theirs = tmp_path / "photos"
    theirs.mkdir()
    check_writable(str(mine), force=True)
    with pytest.raises(InputError, match="fwconv did not write it"):
        check_writable(str(theirs), force=True)
    src = tmp_path / "model.pt2"
    src.write_bytes(b"m")
    for out, words in ((src, "is the input"), (tmp_path, "contains the input"), (tmp_path / "model.pt2" / "x", "inside")):
        with pytest.raises(InputError, match=words):
            check_writable(str(out), force=True, protected=[str(src)] if words != "inside" else [str(tmp_path)])


# -- gate config -----------------------------------------------------------------------------

def test_gate_config_paths_names_and_overrides(tmp_path):
    from fwconv.gate.config import jobs_from_config

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text("def build(): pass\n")
    (tmp_path / "gate.toml").write_text(
        '[gate]\noutput_dir = "arts"\natol = 1e-3\n'
        '[[model]]\nname = "net"\nsource = "models/net.py:build"\ninput_shape = ["1,4"]\n'
        'targets = ["onnx", "tflite"]\n[model.target.tflite]\nquantize = "fp16"\natol = 1e-2\n')
    jobs, meta = jobs_from_config(str(tmp_path / "gate.toml"))
    assert [j.id for j in jobs] == ["net:onnx", "net:tflite"]
    assert jobs[0].source == f"{tmp_path / 'models' / 'net.py'}:build"
    assert jobs[0].output == str(tmp_path / "arts" / "net" / "net.onnx")
    assert jobs[0].settings["atol"] == 1e-3 and jobs[1].settings["atol"] == 1e-2
    assert jobs[1].settings["quantize"] == "fp16" and "quantize" not in jobs[0].settings
    assert meta["output_dir"] == str(tmp_path / "arts")


# -- the house: imports go one way ------------------------------------------------------------

def test_layers_import_one_way():
    """CLI -> API -> convert / validators -> models: the validators never import the conversion
    wing, the model layer imports neither, and conversion uses the validators in one place."""
    import pathlib
    import re

    repo = pathlib.Path(__file__).resolve().parent.parent

    def importers(folder: str, target: str) -> set[str]:
        pattern = re.compile(rf"^\s*(from|import) {re.escape(target)}\b", re.M)
        return {str(p.relative_to(repo)) for p in (repo / folder).rglob("*.py") if pattern.search(p.read_text())}

    assert importers("validators", "fwconv.convert") == set()
    assert importers("fwconv/models", "fwconv.convert") == set() and importers("fwconv/models", "fwconv.validators") == set()
    # the pipeline (with the reference run it starts with, split out of it) and its generative
    # counterpart are the only places a conversion asks the validators for a verdict
    assert importers("convert", "fwconv.validators") == {"convert/pipeline.py", "convert/reference.py",
                                                         "convert/generative.py"}


def test_interrupt_message_says_what_was_already_written(monkeypatch):
    import signal

    from fwconv import signals

    monkeypatch.setattr(signals, "_published", [])
    assert str(signals.Interrupted(signal.SIGINT)).endswith("nothing was written")
    signals.note_published("out/m.tflite")
    message = str(signals.Interrupted(signal.SIGTERM))
    assert "SIGTERM" in message and "already written: out/m.tflite" in message
    assert signals.Interrupted(signal.SIGTERM).exit_code == 143


def test_pt2_shape_code_allowlist():
    """What torch writes passes; anything that calls, imports or reaches attributes does not."""
    from fwconv.models.pt2_code import _safe_expression, _safe_guard

    for ok in ("Symbol('s77', positive=True, integer=True)", "2*s0 + 1", "Max(1, FloorDiv(s0, 2))", "s0 >= 2"):
        assert _safe_expression(ok), ok
    for bad in ("__import__('os').system('x')", "s0.__class__", "open('f')", "Symbol('__x__')", "lambda: 1", "s0[0]"):
        assert not _safe_expression(bad), bad
    assert _safe_guard("L['x'].size()[0] >= 2 and L['x'].stride()[1] == 1")
    for bad in ("__import__('os').system('x') == 0", "L['x'].__class__", "print(1)", "L['x'].size().__len__()"):
        assert not _safe_guard(bad), bad
