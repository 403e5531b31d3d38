"""Benchmark: ExecuTorch `.pte` (XNNPACK, portable) beside the `.tflite` routes, in one run.

Per model: `fwconv torch2pte` with each backend and `fwconv torch2tflite` with each route, through
the API (one process, so imports are paid once; conversion time is the manifest's total, without
validation). Reported: size, conversion seconds, p50 latency in each artifact's own runtime
(ExecuTorch / LiteRT, 1 thread, same timing loop, rounds interleaved) and max error against
PyTorch scaled to the output.

    .venv/bin/python scripts/bench_pte.py [--models cnn,transformer,gru] [--runs 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {"pte xnnpack": ("pte", {"backend": "xnnpack"}), "pte portable": ("pte", {"backend": "portable"}),
            "tflite --via onnx": ("tflite", {"via": "onnx"}), "tflite --via litert": ("tflite", {"via": "litert"})}


def convert_all(pt2: str, work: str) -> dict[str, tuple[str, float]]:
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert

    out = {}
    for label, (target, kw) in VARIANTS.items():
        path = os.path.join(work, label.replace(" ", "_").replace("-", "") + "." + target)
        result = convert(pt2, target, path, ConvertOptions(validate=False, **kw))
        out[label] = (result.artifact, next(s["seconds"] for s in result.manifest.stages if s["stage"] == "total"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="cnn,transformer,gru")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    sys.path.insert(0, REPO)
    from fixtures.generate import generate
    from fwconv.validators.latency import LatencySettings
    from fwconv.validators.runners import make_runner

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, paths in generate(os.path.join(tmp, "models"), opts.models.split(",")).items():
            arts = convert_all(paths["pt2"], tempfile.mkdtemp(dir=tmp))
            with np.load(paths["npz"]) as d:
                feed = {k: d[k] for k in d.files}
            reference = make_runner(paths["pt2"]).activate()
            ref = next(iter(reference.infer(feed).values()))
            runners = {label: make_runner(path, threads=1).activate() for label, (path, _) in arts.items()}
            errors = {label: float(np.abs(next(iter(r.infer(feed).values())) - ref).max() / np.abs(ref).max())
                      for label, r in runners.items()}
            samples = {label: [] for label in arts}
            order = list(arts)
            for _ in range(opts.rounds):
                for label in order:
                    stats = runners[label].measure_latency(feed, LatencySettings(warmup_runs=20, runs=opts.runs))
                    samples[label].append(stats.p50_ms)
                order.reverse()
            for label, (path, seconds) in arts.items():
                rows.append((name, label, os.path.getsize(path) / 1024, seconds, statistics.median(samples[label]),
                             errors[label]))
            print(f"done {name}", flush=True)
    print("\n| model | artifact | size (KiB) | convert (s) | p50 (ms, 1 thread) | max err / scale vs PyTorch |")
    print("|---|---|---|---|---|---|")
    for name, label, size, seconds, p50, err in rows:
        print(f"| {name} | {label} | {size:.1f} | {seconds:.1f} | {p50:.4f} | {err:.1e} |")


if __name__ == "__main__":
    main()
