"""Benchmark: the validator's timing loop against a bare inference loop on the same runtime.

For LiteRT and ONNX Runtime, on the same model and inputs, alternate ROUNDS times between
  bare    for _ in range(N): interpreter.set_tensor(...); interpreter.invoke()   (or session.run)
  fwconv  fwconv.validators.latency.measure(runner.timed_call(feed), runs=N)
and compare the median per-inference time. Rounds alternate the order (ABBA): on this 2-core VM
whichever loop runs second after a switch measured up to 20% slower. Target: fwconv adds under 3%.

    .venv/bin/python scripts/bench_validator_overhead.py [--runs 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bare_litert(path, feed, n):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=1)
    interp.allocate_tensors()
    sig = interp._get_full_signature_list()["serving_default"]["inputs"]
    staged = [(sig[k], v) for k, v in feed.items()]

    def loop():
        start = time.perf_counter()
        for _ in range(n):
            for index, value in staged:
                interp.set_tensor(index, value)
            interp.invoke()
        return (time.perf_counter() - start) / n
    return loop


def bare_ort(path, feed, n):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    def loop():
        start = time.perf_counter()
        for _ in range(n):
            sess.run(names, feed)
        return (time.perf_counter() - start) / n
    return loop


def fwconv_loop(path, feed, n):
    from fwconv.validators.latency import LatencySettings
    from fwconv.validators.runners import make_runner

    runner = make_runner(path, threads=1).activate()
    settings = LatencySettings(warmup_runs=0, runs=n)
    return lambda: runner.measure_latency(feed, settings).mean_ms / 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=12)
    opts = ap.parse_args()
    sys.path.insert(0, REPO)
    from fixtures.generate import generate
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert

    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(os.path.join(tmp, "m"), ["cnn"])["cnn"]
        with np.load(paths["npz"]) as d:
            feed = {k: d[k] for k in d.files}
        arts = {
            "litert": convert(paths["pt2"], "tflite", os.path.join(tmp, "cnn.tflite"), ConvertOptions(validate=False)).artifact,
            "onnxruntime": convert(paths["pt2"], "onnx", os.path.join(tmp, "cnn.onnx"), ConvertOptions(validate=False)).artifact,
        }
        print("| runtime | bare loop (µs/inference) | fwconv timing loop (µs/inference) | overhead |")
        print("|---|---|---|---|")
        for runtime, bare in (("litert", bare_litert), ("onnxruntime", bare_ort)):
            path = arts[runtime]
            loops = {"bare": bare(path, feed, opts.runs), "fwconv": fwconv_loop(path, feed, opts.runs)}
            for loop in loops.values():
                loop()  # warm
            samples = {k: [] for k in loops}
            order = list(loops)
            for _ in range(opts.rounds):  # ABBA: whichever runs second in a round is not favoured
                for key in order:
                    samples[key].append(loops[key]())
                order.reverse()
            b, f = statistics.median(samples["bare"]), statistics.median(samples["fwconv"])
            print(f"| {runtime} | {b * 1e6:.1f} | {f * 1e6:.1f} | {100 * (f - b) / b:+.1f}% |", flush=True)


if __name__ == "__main__":
    main()
