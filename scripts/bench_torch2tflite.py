"""Benchmark: `fwconv torch2tflite` against driving the same tools by hand, in one run.

For each model, each variant runs as its own process (cold imports, like a user's command),
REPEATS times, and the median wall time is reported:
  raw-default  torch.onnx.export (dynamo) + onnx2tf.convert() with its defaults (it writes a
               SavedModel, fp32 and fp16 .tflite; with the venv on PATH it also runs onnxsim).
               A calibration .npy is placed in its cwd, else it downloads one and fails offline.
  raw-lean     the same with onnx2tf's onnxsim step off (the least a hand-written script does).
  fwconv       `fwconv torch2tflite --via onnx --no-validate` (the same tools: export, onnxsim,
               onnx2tf, the interface wrapper, TFLiteConverter, manifest).
  fwconv+val   `fwconv torch2tflite --via onnx` with its default validation (parity + 20 timed runs).
  (`--via auto`, the default, keeps litert-torch's artifact when it passes: scripts/bench_perf.py
  measures that against the raw tools; scripts/bench_routes.py compares the two routes' artifacts.)

    .venv/bin/python scripts/bench_torch2tflite.py [--repeats 3] [--json out/bench_torch2tflite.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)

RAW = r"""
import os, sys, numpy as np, torch, onnx2tf
src, work, lean = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
ep = torch.export.load(src)
args = ep.example_inputs[0]
onnx_path = os.path.join(work, "model.onnx")
torch.onnx.export(ep, args, onnx_path, dynamo=True, external_data=False)
os.chdir(work)
np.save("calibration_image_sample_data_20x128x128x3_float32.npy", np.zeros((1, 8, 8, 3), np.float32))
onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=os.path.join(work, "out"),
                non_verbose=True, not_use_onnxsim=lean)
assert any(f.endswith("_float32.tflite") for f in os.listdir(os.path.join(work, "out")))
"""


def timed(cmd: list[str], cwd: str) -> float:
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {proc.stderr[-800:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="cnn,transformer,gru")
    ap.add_argument("--json", default=os.path.join(REPO, "out", "bench_torch2tflite.json"))
    opts = ap.parse_args()
    sys.path.insert(0, REPO)
    from fixtures.generate import generate

    fwconv = os.path.join(VENV_BIN, "fwconv")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = generate(os.path.join(tmp, "models"), opts.models.split(","))
        for name, paths in models.items():
            src = paths["pt2"]
            variants = {
                "raw-default": lambda w: [sys.executable, "-c", RAW, src, w, "0"],
                "raw-lean": lambda w: [sys.executable, "-c", RAW, src, w, "1"],
                "fwconv": lambda w: [fwconv, "torch2tflite", src, "--via", "onnx", "-o", os.path.join(w, "m.tflite"),
                                     "--no-validate"],
                "fwconv+val": lambda w: [fwconv, "torch2tflite", src, "--via", "onnx", "-o", os.path.join(w, "m.tflite")],
            }
            times = {k: [] for k in variants}
            for _ in range(opts.repeats):  # interleaved, so drift hits every variant alike
                for key, make in variants.items():
                    with tempfile.TemporaryDirectory(dir=tmp) as work:
                        times[key].append(timed(make(work), work))
            results[name] = {k: statistics.median(v) for k, v in times.items()} | {"samples": times}
            print(name, {k: round(v, 2) for k, v in results[name].items() if k != "samples"}, flush=True)
    print("\n| model | raw onnx2tf defaults (s) | raw, onnxsim off (s) | fwconv --no-validate (s) | "
          "fwconv validated (s) | fwconv / raw-default | fwconv / raw-lean | validated / raw-lean |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['raw-default']:.1f} | {r['raw-lean']:.1f} | {r['fwconv']:.1f} | {r['fwconv+val']:.1f} | "
              f"{r['fwconv'] / r['raw-default']:.2f} | {r['fwconv'] / r['raw-lean']:.2f} | "
              f"{r['fwconv+val'] / r['raw-lean']:.2f} |")
    os.makedirs(os.path.dirname(opts.json), exist_ok=True)
    with open(opts.json, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
