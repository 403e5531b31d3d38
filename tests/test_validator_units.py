"""Validator building blocks on plain numpy: metrics, tolerances, inputs, alignment, latency, reports."""

from __future__ import annotations

import json
import math
import time
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from fwconv.errors import InputError
from fwconv.specs import TensorSpec
from fwconv.validators.align import bind, parse_map
from fwconv.validators.compare import ValidationReport
from fwconv.validators.inputs import input_sets, parse_ranges, synthetic_inputs
from fwconv.validators.latency import LatencySettings, measure, summarize
from fwconv.validators.metrics import Tolerance, compare_arrays
from fwconv.validators.report import to_json, to_junit, to_markdown, to_text


def test_metrics_agree_with_numpy():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((4, 10)).astype(np.float32)
    cand = ref + rng.normal(0, 1e-3, ref.shape).astype(np.float32)
    cand[2, 7] += 0.05
    r = compare_arrays("logits", ref, cand, Tolerance(atol=0.1, rtol=0.0))
    d = cand.astype(np.float64) - ref.astype(np.float64)
    scale = np.abs(ref).max()
    m = r.metrics
    assert math.isclose(m["max_abs_err"], np.abs(d).max(), rel_tol=1e-12)
    assert math.isclose(m["mean_abs_err"], np.abs(d).mean(), rel_tol=1e-9)
    assert math.isclose(m["rmse"], np.sqrt((d ** 2).mean()), rel_tol=1e-9)
    assert math.isclose(m["max_rel_err"], (np.abs(d) / np.maximum(np.abs(ref), 1e-3 * scale)).max(), rel_tol=1e-9)
    cos = float((ref.astype(np.float64) * cand).sum() / np.linalg.norm(ref.astype(np.float64)) / np.linalg.norm(cand.astype(np.float64)))
    assert math.isclose(m["cosine"], cos, rel_tol=1e-9)
    assert math.isclose(m["snr_db"], 10 * np.log10((ref.astype(np.float64) ** 2).sum() / (d ** 2).sum()), rel_tol=1e-9)
    assert m["argmax_agreement"] == np.mean(ref.argmax(-1) == cand.argmax(-1))
    assert r.worst["index"] == [2, 7]
    assert r.passed
    assert math.isclose(m["min_atol_to_pass"], np.abs(d).max(), rel_tol=1e-12)


def test_failure_names_output_index_values_and_metric():
    ref = np.linspace(-1, 1, 50, dtype=np.float32).reshape(5, 10)
    cand = ref.copy()
    cand[3, 4] += 0.5
    r = compare_arrays("scores", ref, cand, Tolerance())
    assert not r.passed
    assert "exceed atol" in r.failure
    assert r.worst == {"index": [3, 4], "reference": pytest.approx(float(ref[3, 4])),
                       "candidate": pytest.approx(float(cand[3, 4]))}


def test_default_tolerance_scales_with_output_and_precision():
    ref = np.full((8,), 1000.0) + np.arange(8)
    cand = ref + 0.05  # 5e-5 of scale
    assert compare_arrays("big", ref, cand, Tolerance("fp32")).passed
    assert not compare_arrays("big", ref, ref + 1.0, Tolerance("fp32")).passed
    assert compare_arrays("big", ref, ref + 1.0, Tolerance("fp16")).passed
    assert not compare_arrays("big", ref, ref + 1.0, Tolerance("fp32", atol=1e-3)).passed


def test_nan_shape_and_degenerate_checks():
    ref = np.ones((2, 3), np.float32) * np.arange(3)
    bad = ref.copy()
    bad[0, 0] = np.nan
    r = compare_arrays("y", ref, bad, Tolerance())
    assert not r.passed and "NaN" in r.failure
    r = compare_arrays("y", ref, ref.reshape(3, 2), Tolerance())
    assert not r.passed and "shape mismatch" in r.failure
    r = compare_arrays("zeros", np.zeros((4,)), np.zeros((4,)), Tolerance())
    assert r.passed and any("all zeros" in w for w in r.warnings)
    r = compare_arrays("const", np.full((4,), 3.0), np.full((4,), 3.0), Tolerance())
    assert any("constant" in w for w in r.warnings)
    r = compare_arrays("tiny", np.full((4,), 1e-38) * np.arange(4), np.zeros(4), Tolerance())
    assert any("denormal" in w for w in r.warnings)


def test_seeded_inputs_are_reproducible_and_in_range():
    specs = [TensorSpec("image", [1, 3, 8, 8]), TensorSpec("ids", [1, 12], "int64"), TensorSpec("mask", [1, 12], "bool")]
    a = synthetic_inputs(specs, seed=3, int_bounds={"ids": 50})
    b = synthetic_inputs(specs, seed=3, int_bounds={"ids": 50})
    c = synthetic_inputs(specs, seed=4, int_bounds={"ids": 50})
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert a["image"].tobytes() != c["image"].tobytes()
    assert a["ids"].dtype == np.int64 and 0 <= a["ids"].min() and a["ids"].max() < 50
    ranged = synthetic_inputs(specs, seed=0, ranges=parse_ranges(["image:0,1", "ids:5,7"]))
    assert ranged["image"].min() >= 0 and ranged["image"].max() <= 1
    assert set(np.unique(ranged["ids"])) <= {5, 6}
    sets = input_sets(specs, samples=3, seed=10)
    assert len(sets) == 3 and sets[1]["image"].tobytes() == synthetic_inputs(specs, seed=11)["image"].tobytes()
    with pytest.raises(InputError):
        synthetic_inputs([TensorSpec("dyn", [None, 3])])


def test_alignment_by_name_position_shape_and_map():
    ref = {"x": [1, 3, 8, 8], "y": [1, 4]}
    same = bind(["x", "y"], ref, ["y", "x"], {"x": [1, 3, 8, 8], "y": [1, 4]})
    assert [(b.reference, b.candidate, b.how) for b in same] == [("x", "x", "same name"), ("y", "y", "same name")]
    nhwc = bind(["x", "y"], ref, ["in0", "in1"], {"in0": [1, 8, 8, 3], "in1": [1, 4]})
    assert nhwc[0].perm == (0, 2, 3, 1) and "inferred from shapes" in nhwc[0].how
    arr = np.arange(3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8)
    assert nhwc[0].to_candidate(arr).shape == (1, 8, 8, 3)
    assert np.array_equal(nhwc[0].to_reference(nhwc[0].to_candidate(arr)), arr)
    with pytest.raises(InputError, match="has shape"):
        bind(["x"], {"x": [1, 3, 8, 8]}, ["x"], {"x": [1, 3, 8, 9]})
    mapped = bind(["x"], {"x": [1, 3, 8, 8]}, ["img"], {"img": [1, 8, 8, 3]}, user_map=parse_map(["x=img:nhwc"]))
    assert mapped[0].how == "--map" and mapped[0].perm == (0, 2, 3, 1)
    with pytest.raises(InputError):
        parse_map(["nonsense"])


def test_latency_stats_are_ordered_and_positive():
    stats = measure(lambda: time.sleep(0.0005), LatencySettings(warmup_runs=2, runs=30))
    assert stats.runs == 30 and stats.warmup_runs == 2
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.mean_ms > 0.4
    s = summarize([0.001, 0.002, 0.003, 0.004], 0)
    assert s.p50_ms == pytest.approx(2.5)


def _report(passed: bool) -> ValidationReport:
    ref = np.arange(10, dtype=np.float32).reshape(1, 10)
    out = compare_arrays("logits", ref, ref + (0 if passed else 1.0), Tolerance())
    return ValidationReport(reference={"model": "a.pt2", "runtime": "torch", "device": "cpu"},
                            candidate={"model": "a.tflite", "runtime": "litert", "device": "cpu"}, samples=1, seed=0,
                            inputs=[], input_bindings=[], output_bindings=[], outputs=[out],
                            latency={"reference": summarize([0.002] * 5, 1), "candidate": summarize([0.003] * 5, 1)},
                            latency_ratio=1.5, max_latency_ratio=1.2)


def test_reports_render_in_every_format():
    report = _report(passed=False)
    data = json.loads(to_json(report))
    assert data["schema"] == "fwconv.validation" and data["schema_version"] == 1
    assert data["status"] == "parity_failed" and data["outputs"][0]["name"] == "logits"
    assert data["latency"]["candidate"]["p50_ms"] == pytest.approx(3.0)
    suite = ET.fromstring(to_junit(report)).find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["parity[logits]", "latency"]
    assert suite.get("failures") == "2"
    assert "parity failed" in to_markdown(report) and "| logits |" in to_markdown(report)
    assert "verdict: PARITY FAILED" in to_text(report)
    ok = _report(passed=True)
    assert ok.status == "latency_exceeded" and json.loads(to_json(ok))["status"] == "latency_exceeded"


def test_gpu_paths_without_a_gpu():
    """The CUDA choices are plain logic: checked here; the GPU run itself is marked `gpu`."""
    from fwconv.errors import RunnerError
    from fwconv.validators.runners.onnxrt_runner import providers_for

    assert providers_for("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert providers_for("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    with pytest.raises(RunnerError, match="CUDAExecutionProvider"):
        providers_for("cuda", ["CPUExecutionProvider"])
    # GPU runners synchronize inside the timed region: every timed call is followed by a sync
    events = []
    measure(lambda: events.append("call"), LatencySettings(warmup_runs=1, runs=5), synchronize=lambda: events.append("sync"))
    assert events == ["call", "sync"] * 6
