"""HTML reports (`--html`): one offline file each for debug, validate and gate, model-derived names
escaped, and the plots really drawn, as a headless Chromium shows them."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import invoke
from fwconv.validators.latency import MAX_SAMPLES, summarize
from fwconv.validators.metrics import error_histogram

pytest.importorskip("plotly")
HOSTILE = "<script>alert('pwned')</script>"
REMOTE = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", re.I)
PLOTLY_BANNER = re.compile(r"\* plotly\.js v\d")


def _pair(i: int, err: float) -> dict:
    return {"index": i, "reference": {"tensor": f"t{i}", "op": f"/block{i}/Conv", "op_type": "Conv",
                                      "module": f"net.block{i}", "source": f"net.py:{20 + i}"},
            "candidate": {"tensor": f"tfl{i}", "op": f"conv_{i}", "op_type": "CONV_2D"},
            "how": "recorded name", "transpose": [0, 2, 3, 1], "shape": [1, 4, 8, 8],
            "max_abs_err": err * 2, "max_rel_err": err * 5, "scaled_max_err": err, "cosine": 1 - err,
            "snr_db": -10 * math.log10(err), "within_tolerance": err <= 1e-4, "isolated": None}


def debug_report(*, diverged: bool = True) -> dict:
    """A small report in the debugger's schema (fwconv.debug v1): 12 pairs, the fault at pair 7."""
    rng = np.random.default_rng(0)
    pairs = [_pair(i, 1e-7 * 2 ** i if i < 7 or not diverged else 3e-2) for i in range(12)]
    ref = rng.normal(size=(8, 12))
    cand = ref.copy()
    cand[2:5, 3:7] += 0.8
    first = {"pair": 7, "reference": pairs[7]["reference"], "candidate": pairs[7]["candidate"], "span": ["/block7/Relu"],
             "metrics": {"max_abs_err": 0.06, "scaled_max_err": 0.03, "cosine": 0.97, "snr_db": 15.2},
             "preview": {"where": "channel 0 of 4", "reference": ref.tolist(), "candidate": cand.tolist()}}
    errors = np.abs(rng.normal(size=2000)) * 10.0 ** rng.uniform(-7, -2, 2000)
    return {"schema": "fwconv.debug", "schema_version": 1, "status": "diverged" if diverged else "clean",
            "reference": {"model": "net.onnx", "format": "onnx", "runtime": "onnxruntime"},
            "candidate": {"model": "net.tflite", "format": "tflite", "runtime": "litert"},
            "tolerance": {"atol": 1e-4, "rtol": 1e-4}, "mode": "propagated", "pairs": pairs,
            "unpaired": {"reference": 1, "candidate": 3}, "first_divergence": first if diverged else None,
            "outputs": [{"name": "logits", "max_abs_err": 0.1, "scaled_max_err": 0.05, "cosine": 0.99, "snr_db": 21.0,
                         "histogram": error_histogram(errors)}],
            "latency": {"reference": {"p50_ms": 1.2, "samples_ms": list(rng.normal(1.2, 0.1, 40))},
                        "candidate": {"p50_ms": 0.8, "samples_ms": list(rng.normal(0.8, 0.05, 40))}},
            "notes": ["3 candidate tensors had no partner"]}


def gate_results() -> list:
    from fwconv.gate.result import JobResult

    return [JobResult.from_dict(d) for d in _gate_dicts()]


def _gate_dicts() -> list[dict]:
    ok = {"id": "cnn:tflite", "model": "cnn", "target": "tflite", "status": "pass", "messages": [], "exit_code": 0,
          "seconds": 12.5, "latency": {"p50_ms": 0.41, "p90_ms": 0.5, "p99_ms": 0.6, "runs": 20},
          "validation": {"latency": {"reference": {"p50_ms": 0.9}, "candidate": {"p50_ms": 0.41}},
                         "outputs": [{"metrics": {"scaled_max_err": 2e-6}}]}}
    bad = {"id": "mlp:onnx", "model": "mlp", "target": "onnx", "status": "parity_failed", "exit_code": 3,
           "seconds": 3.0, "messages": [f"output '{HOSTILE}': 12 of 64 elements exceed atol"],
           "validation": {"outputs": [{"metrics": {"scaled_max_err": 0.2}}]}}
    return [ok, bad]


def plot_ids(html: str) -> list[str]:
    return re.findall(r'<div id="(fw-[a-z-]+)" class="plotly-graph-div"', html)


def assert_one_offline_file(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert len(PLOTLY_BANNER.findall(html)) == 1, "plotly.js must be inlined exactly once"
    assert not REMOTE.search(html), REMOTE.search(html).group(0)
    assert "cdn.plot.ly" not in html.split("<body>", 1)[1]


# -- the page, as text ---------------------------------------------------------------------------

def test_debug_page_has_every_plot_offline():
    from fwconv.validators.html_report import debug_html

    html = debug_html(debug_report())
    assert_one_offline_file(html)
    assert plot_ids(html) == ["fw-error-curve", "fw-tensors", "fw-histograms", "fw-latency"]
    assert "/block7/Conv" in html and "net.block7" in html and "net.py:27" in html and "conv_7" in html
    assert "DIVERGED" in html and "/block7/Relu" in html


def test_clean_and_sparse_debug_report_still_renders():
    """No divergence, no pairs, no latency, no histograms: every section says so instead of breaking."""
    from fwconv.validators.html_report import debug_html

    report = debug_report(diverged=False)
    report.update(pairs=[], latency={}, outputs=[{"name": "y", "max_abs_err": 0.0, "scaled_max_err": 0.0,
                                                 "cosine": None, "snr_db": None, "histogram": None}])
    html = debug_html(report)
    assert_one_offline_file(html)
    assert plot_ids(html) == []
    for line in ("No divergence", "no intermediate tensors were paired", "latency was not measured", "CLEAN"):
        assert line in html
    del report["first_divergence"], report["outputs"], report["tolerance"]
    assert "No divergence" in debug_html(report)


def test_model_derived_names_are_escaped():
    """Names come from untrusted model files: none may reach the page as markup."""
    from fwconv.gate.report import to_html as gate_html
    from fwconv.validators.html_report import debug_html, validation_html

    report = debug_report()
    report["pairs"][7]["reference"]["op"] = HOSTILE
    report["first_divergence"]["reference"] = report["pairs"][7]["reference"]
    report["candidate"]["model"] = HOSTILE
    report["outputs"][0]["name"] = HOSTILE
    report["notes"] = [HOSTILE]
    report["first_divergence"]["preview"]["where"] = HOSTILE
    pages = [debug_html(report), gate_html(gate_results(), {"config": HOSTILE}),
             validation_html({"status": "parity_failed", "reference": {"model": HOSTILE}, "candidate": {},
                              "outputs": [{"name": HOSTILE, "passed": False, "metrics": {}}], "failures": [HOSTILE]})]
    for html in pages:
        assert HOSTILE not in html
        assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
        assert html.count("<script") == html.count("</script>")


def test_gate_page_lists_jobs_latency_and_failures():
    from fwconv.gate.report import to_html as gate_html

    html = gate_html(gate_results(), {"config": "fwconv.toml", "output_dir": "out"})
    assert_one_offline_file(html)
    assert plot_ids(html) == ["fw-gate-latency"]
    assert "cnn:tflite" in html and "mlp:onnx" in html and "12 of 64 elements exceed atol" in html
    assert "1 of 2 job(s) passed, exit code 3" in html
    empty = gate_html([], {})
    assert "no jobs ran" in empty and plot_ids(empty) == []


# -- the data the pages draw ---------------------------------------------------------------------

def test_latency_keeps_capped_samples():
    stats = summarize([0.001] * 10, 0)
    assert stats.samples_ms == [1.0] * 10
    many = summarize([i * 1e-6 for i in range(5000)], 0)
    assert len(many.samples_ms) == MAX_SAMPLES
    assert many.samples_ms[0] == 0.0 and many.samples_ms[-1] == pytest.approx(4.999)  # both ends kept


def test_error_histogram_counts_every_element():
    rng = np.random.default_rng(1)
    spread = np.abs(rng.normal(size=999)) * 10.0 ** rng.uniform(-8, -1, 999)
    hist = error_histogram(np.append(spread, [0.0]))
    assert hist["log"] and hist["zeros"] == 1 and sum(hist["counts"]) == 999 and len(hist["edges"]) == 41
    assert all(a < b for a, b in zip(hist["edges"], hist["edges"][1:]))
    narrow = error_histogram(np.array([0.5, 0.6, 0.7]))
    assert not narrow["log"] and sum(narrow["counts"]) == 3 and narrow["edges"][0] == 0.0
    assert error_histogram(np.array([])) is None


# -- real runs through the CLI -------------------------------------------------------------------

def tiny_onnx(path, weight: np.ndarray) -> str:
    """y = relu(x @ W + b): two of these with different W are a reference and a faulty candidate."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows, cols = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="matmul"), helper.make_node("Add", ["h", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, cols])],
        [numpy_helper.from_array(weight.astype(np.float32), "W"),
         numpy_helper.from_array(np.full(cols, 0.1, np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return str(path)


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("html_models")
    w = np.random.default_rng(0).normal(size=(32, 64))
    faulty = w.copy()
    faulty[3, :8] += 0.05  # one row of weights off: a parity failure the histogram shows
    return tiny_onnx(d / "ref.onnx", w), tiny_onnx(d / "cand.onnx", faulty)


@pytest.fixture(scope="module")
def validation_page(onnx_pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("html_validate")
    r = invoke("validate", *onnx_pair, "--runs", "25", "--html", out / "report.html", "--json", out / "report.json")
    assert r.exit_code == 3, r.output  # parity failed: the reports are still written
    return out / "report.html", json.loads((out / "report.json").read_text())


def test_validate_writes_html_with_histograms_and_latency(validation_page):
    page, data = validation_page
    html = page.read_text()
    assert_one_offline_file(html)
    assert plot_ids(html) == ["fw-histograms", "fw-latency"]
    assert "PARITY FAILED" in html and "ref.onnx" in html and "cand.onnx" in html
    out = data["outputs"][0]  # the JSON carries what the page draws (isolated runners included)
    assert sum(out["histogram"]["counts"]) + out["histogram"]["zeros"] == 4 * 64
    for side in ("reference", "candidate"):
        assert len(data["latency"][side]["samples_ms"]) == data["latency"][side]["runs"] >= 25


def test_html_follows_the_output_rules(onnx_pair, validation_page, tmp_path):
    ref, cand = onnx_pair
    r = invoke("validate", ref, cand, "--no-latency", "--html", ref)
    assert r.exit_code == 2 and "is the input" in r.output
    r = invoke("validate", ref, cand, "--no-latency", "--html", validation_page[0])
    assert r.exit_code == 2 and "already exists" in r.output
    cfg = tmp_path / "fwconv.toml"
    cfg.write_text(textwrap.dedent(f"""
        [[model]]
        name = "tiny"
        source = "{ref}"
        targets = ["tflite"]
    """))
    r = invoke("gate", cfg, "--html", cfg)
    assert r.exit_code == 2 and "is the input" in r.output


BLOCK_PLOTLY = """
import sys
class NoPlotly:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'plotly':
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoPlotly())
from fwconv.cli import main
sys.argv = ['fwconv'] + sys.argv[1:]
main()
"""


def test_html_without_plotly_is_one_line_before_any_model_runs(onnx_pair, tmp_path):
    out = tmp_path / "r.html"
    proc = subprocess.run([sys.executable, "-c", BLOCK_PLOTLY, "validate", *onnx_pair, "--html", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == "fwconv: error: 'plotly' is not installed (install it with: pip install 'fwconv[report]')"
    assert proc.stdout == "" and not out.exists()


# -- in a real browser ---------------------------------------------------------------------------

def chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Headless Chromium from the system packages, offline, in its own process group (killed whole
    on a timeout: it forks helpers)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=1400,2400", "--virtual-time-budget=5000"]
    proc = subprocess.Popen([exe, *flags, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish in {timeout}s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def rendered_plots(html_path, tmp_path) -> dict[str, int]:
    """{plot div id: how many of plotly's rendered <svg class="main-svg"> it holds} in the DOM
    Chromium built after running the page's scripts."""
    dom = chromium(f"--user-data-dir={tmp_path / 'dom-profile'}", "--dump-dom", f"file://{html_path}").stdout
    assert "</html>" in dom, "chromium printed no DOM"
    parts = re.split(r'<div id="(fw-[a-z-]+)"', dom)
    return {parts[i]: parts[i + 1].count('class="main-svg"')
            for i in range(1, len(parts) - 1, 2)}


def near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 8) -> int:
    return int(np.all(np.abs(pixels.astype(int) - np.array(rgb)) <= tol, axis=-1).sum())


@pytest.mark.slow
def test_reports_render_in_headless_chromium(validation_page, tmp_path):
    """The plots exist in the browser (plotly drew its SVG for each) and in the pixels: plotly's
    trace blue, the first-divergence red, the heatmaps' Viridis and RdBu colours."""
    image = pytest.importorskip("PIL.Image")
    from fwconv.validators.html_report import debug_html

    page = tmp_path / "debug.html"
    page.write_text(debug_html(debug_report()))
    drawn = rendered_plots(page, tmp_path)
    assert set(drawn) == {"fw-error-curve", "fw-tensors", "fw-histograms", "fw-latency"}
    assert all(n >= 2 for n in drawn.values()), drawn  # plotly draws a main and an info-layer <svg> per plot
    validate_drawn = rendered_plots(validation_page[0], tmp_path)
    assert set(validate_drawn) == {"fw-histograms", "fw-latency"} and min(validate_drawn.values()) >= 2, validate_drawn
    shot = tmp_path / "debug.png"
    chromium(f"--user-data-dir={tmp_path / 'shot-profile'}", f"--screenshot={shot}", f"file://{page}")
    pixels = np.asarray(image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1400)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500, "the screenshot is (nearly) blank"
    assert near(pixels, (229, 236, 246)) > 100_000  # plotly's plot-area background, several plots' worth
    assert near(pixels, (99, 110, 250)) > 300  # the error curve, its markers, the reference latency box
    assert near(pixels, (239, 85, 59)) > 100  # first divergence star and line, candidate latency box
    assert near(pixels, (253, 231, 37), 30) > 20 and near(pixels, (68, 1, 84), 30) > 20  # Viridis ends
    assert near(pixels, (5, 48, 97), 30) > 100  # RdBu's dark blue: the planted difference block


def test_plotly_loads_only_when_a_page_is_drawn():
    """--help and every run without --html must not pay for plotly's import."""
    code = ("import sys, fwconv.cli, fwconv.validators.report, fwconv.validators.html_report, fwconv.gate.report\n"
            "assert 'plotly' not in sys.modules, 'plotly imported eagerly'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_gate_check_only_writes_html(onnx_pair, tmp_path):
    """A real gate run (--check-only: the 'artifact' is the faulty ONNX model, validated in a
    worker process against the source) with --html: the page shows the job, its latency and why
    it failed."""
    ref, cand = onnx_pair
    artifact = tmp_path / "out" / "tiny" / "tiny.onnx"
    artifact.parent.mkdir(parents=True)
    shutil.copy(cand, artifact)
    cfg = tmp_path / "fwconv.toml"
    cfg.write_text(textwrap.dedent(f"""
        [gate]
        output_dir = "out"
        [[model]]
        name = "tiny"
        source = "{ref}"
        targets = ["onnx"]
    """))
    r = invoke("gate", cfg, "--check-only", "--no-cache", "--html", tmp_path / "gate.html")
    assert r.exit_code == 3, r.output
    html = (tmp_path / "gate.html").read_text()
    assert_one_offline_file(html)
    assert plot_ids(html) == ["fw-gate-latency"]
    assert "tiny:onnx" in html and "PARITY FAILED" in html and "elements exceed atol" in html
