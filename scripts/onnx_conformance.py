"""ONNX's own backend node tests (pytorch-converted + pytorch-operator, 117 graphs) as a
conformance count for ONNX -> TFLite: fwconv and raw onnx2tf side by side, in one run.

A case counts as correct only if a .tflite came out and, run in the plain LiteRT interpreter on
the test's own inputs, it gives the test's expected outputs (same shape, max |err| / max
|expected| <= 1e-4). fwconv's own validator is not what decides: the expected outputs are.

Raw onnx2tf runs with its defaults on a copy of the model, in a scratch cwd holding the local
calibration file (so nothing downloads); its model_float32.tflite is judged the same way, with
its NHWC inputs/outputs transposed back where the shapes say so (a layout change is not counted
against it).

    .venv/bin/python scripts/onnx_conformance.py [--only fwconv|onnx2tf] [-k SUBSTRING] [-v]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
DATA_SETS = ("pytorch-converted", "pytorch-operator")
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
TOLERANCE = 1e-4


def case_dirs(root: str | None = None) -> list[str]:
    """Every test directory of the two data sets, sorted by name."""
    if root is None:
        import onnx

        root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    found = [d for name in DATA_SETS for d in glob.glob(os.path.join(root, name, "test_*"))]
    return sorted(found, key=os.path.basename)


def load_case(case: str) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The test's inputs (keyed by the graph's non-initializer input names) and expected outputs."""
    import onnx
    from onnx import numpy_helper

    def tensors(kind: str) -> list[np.ndarray]:
        paths = sorted(glob.glob(os.path.join(case, "test_data_set_0", f"{kind}_*.pb")),
                       key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))
        return [numpy_helper.to_array(onnx.load_tensor(p)) for p in paths]

    model = onnx.load(os.path.join(case, "model.onnx"), load_external_data=False)
    init = {i.name for i in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in init]
    return dict(zip(names, tensors("input"))), tensors("output")


def scaled_error(expected: np.ndarray, got: np.ndarray) -> float:
    """max |got - expected| / max |expected| over the finite expected values; inf on a shape
    mismatch or where a NaN/inf expected value is not matched exactly (sqrt(-1) is NaN)."""
    if tuple(np.shape(got)) != tuple(np.shape(expected)):
        return float("inf")
    ref, cand = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    finite = np.isfinite(ref)
    if not np.array_equal(ref[~finite], cand[~finite], equal_nan=True):
        return float("inf")
    if not finite.any():
        return 0.0
    scale = max(float(np.abs(ref[finite]).max()), 1e-12)
    return float(np.abs(cand[finite] - ref[finite]).max() / scale)


def run_litert(path: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return {k: np.array(v) for k, v in runner(**feed).items()}


def fwconv_case(case: str, work: str) -> tuple[str, str]:
    """('correct'|'wrong'|'exit N', detail) for fwconv on one test."""
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert
    from fwconv.errors import FwconvError
    from fwconv.validators.compare import ValidateSettings

    inputs, expected = load_case(case)
    npz = os.path.join(work, "inputs.npz")
    np.savez(npz, **inputs)
    out = os.path.join(work, "model.tflite")
    try:  # fwconv's own validation stays on (without latency timing); it is not what is judged
        convert(os.path.join(case, "model.onnx"), "tflite", out,
                ConvertOptions(inputs=npz, force=True), ValidateSettings(latency=None))
    except FwconvError as exc:
        return f"exit {exc.exit_code}", exc.one_line()
    return judge(expected, run_fwconv_artifact(out, inputs))


def run_fwconv_artifact(path: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The .tflite wired by its manifest's interface (source name -> signature key, transpose)."""
    with open(path + ".fwconv.json") as f:
        interface = json.load(f)["extra"]["interface"]
    feed = {b["name"]: inputs[b["source"]].transpose(b["transpose"]) if b["transpose"] else inputs[b["source"]]
            for b in interface["inputs"]}
    got = run_litert(path, feed)
    return [got[b["name"]].transpose(np.argsort(b["transpose"])) if b["transpose"] else got[b["name"]]
            for b in interface["outputs"]]


def judge(expected: list[np.ndarray], outs: list[np.ndarray]) -> tuple[str, str]:
    if len(outs) != len(expected):
        return "wrong", f"{len(outs)} outputs, expected {len(expected)}"
    errs = [scaled_error(e, o) for e, o in zip(expected, outs)]
    worst = max(errs) if errs else 0.0
    return ("correct" if worst <= TOLERANCE else "wrong"), f"scaled max err {worst:.3g}"


def _layouts(array: np.ndarray, shape, to_last: bool) -> list[np.ndarray]:
    """`array` as `shape`: moved channel-first -> channel-last (to_last) or back, and as is;
    the moved reading first (onnx2tf transposes by default), only those that fit."""
    rank = array.ndim
    perm = [0] + list(range(2, rank)) + [1] if to_last else [0, rank - 1] + list(range(1, rank - 1))
    moved = [array.transpose(perm)] if rank >= 3 else []
    return [a for a in moved + [array] if a.shape == tuple(shape)]


def onnx2tf_case(case: str, work: str) -> tuple[str, str]:
    """The same check for raw onnx2tf (defaults) on a copy, in a scratch cwd."""
    import onnx2tf

    inputs, expected = load_case(case)
    copy = os.path.join(work, "model.onnx")
    shutil.copyfile(os.path.join(case, "model.onnx"), copy)
    np.save(os.path.join(work, CALIBRATION_FILE), np.zeros((1, 8, 8, 3), np.float32))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        onnx2tf.convert(input_onnx_file_path=copy, output_folder_path=os.path.join(work, "out"), non_verbose=True)
    except BaseException as exc:  # onnx2tf raises SystemExit on many errors
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    finally:
        os.chdir(cwd)
    path = os.path.join(work, "out", "model_float32.tflite")
    if not os.path.exists(path):
        return "failed", "no model_float32.tflite"
    try:
        readings = _run_raw(path, inputs, _output_names(case), [e.shape for e in expected])
    except Exception as exc:
        return "failed", f"LiteRT: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"[:200]
    # A layout change is not held against raw onnx2tf: each output's best-fitting reading counts.
    outs = [min(r, key=lambda a: scaled_error(e, a)) if r else np.zeros(0) for r, e in zip(readings, expected)]
    return judge(expected, outs)


def _run_raw(path: str, inputs: dict[str, np.ndarray], output_names: list[str], shapes: list) -> list[list]:
    """onnx2tf's .tflite has no signature: tensors by name where they match, else by position.
    Returns each output's readings in the expected shape."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    details = interp.get_input_details()
    by_name = {d["name"]: d for d in details}
    for i, (name, value) in enumerate(inputs.items()):
        d = by_name.get(name, details[i])
        fitted = _layouts(value, d["shape"], to_last=True)
        interp.set_tensor(d["index"], (fitted[0] if fitted else value).astype(d["dtype"]))
    interp.invoke()
    outs = interp.get_output_details()
    by_name = {d["name"]: d for d in outs}
    picked = [by_name.get(n, outs[i] if i < len(outs) else None) for i, n in enumerate(output_names)]
    return [_layouts(interp.get_tensor(d["index"]), shape, to_last=False) if d else []
            for d, shape in zip(picked, shapes)]


def _output_names(case: str) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(os.path.join(case, "model.onnx"), load_external_data=False).graph.output]


def run_all(cases: list[str], tools: list[str], verbose: bool) -> dict[str, dict[str, tuple[str, str]]]:
    """{tool: {test name: (status, detail)}}; the converters' own chatter is captured."""
    from fwconv.quiet import captured_output

    results: dict[str, dict[str, tuple[str, str]]] = {t: {} for t in tools}
    runners = {"fwconv": fwconv_case, "onnx2tf": onnx2tf_case}
    for case in cases:
        name = os.path.basename(case)
        for tool in tools:
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix=f"conf-{tool}-") as work, captured_output():
                try:
                    results[tool][name] = runners[tool](case, work)
                except Exception as exc:  # a crash in the harness itself is a failure of that case
                    results[tool][name] = ("crashed", f"{type(exc).__name__}: {exc}"[:200])
            if verbose:
                status, detail = results[tool][name]
                print(f"{tool:8s} {name:45s} {status:8s} {time.perf_counter() - start:6.1f}s  {detail}", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["fwconv", "onnx2tf"])
    ap.add_argument("-k", default="", help="only tests whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per test and tool")
    opts = ap.parse_args()
    cases = [c for c in case_dirs() if opts.k in os.path.basename(c)]
    tools = [opts.only] if opts.only else ["fwconv", "onnx2tf"]
    start = time.perf_counter()
    results = run_all(cases, tools, opts.verbose)
    print()
    for tool in tools:
        correct = sum(1 for s, _ in results[tool].values() if s == "correct")
        print(f"{tool:8s} converted and correct: {correct} / {len(cases)}")
    report(results, tools)
    print(f"wall time {time.perf_counter() - start:.0f}s")


def report(results: dict, tools: list[str]) -> None:
    """fwconv's misses, and where the two tools disagree."""
    if "fwconv" in tools:
        for name, (status, detail) in sorted(results["fwconv"].items()):
            if status != "correct":
                print(f"  fwconv {status}: {name}: {detail[:160]}")
    if len(tools) == 2:
        for name in sorted(results["fwconv"]):
            a, b = results["fwconv"][name], results["onnx2tf"][name]
            if (a[0] == "correct") != (b[0] == "correct"):
                print(f"  differs: {name}: fwconv {a[0]}; onnx2tf {b[0]} ({b[1][:100]})")


if __name__ == "__main__":
    main()
