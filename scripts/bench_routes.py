"""Benchmark: the .tflite each route makes, side by side, in one run.

Per model: fwconv --via onnx, fwconv --via litert, raw onnx2tf defaults (export + onnx2tf.convert,
its model_float32.tflite) and raw litert-torch (litert_torch.convert(module, args).export).
Reported: size, LiteRT latency (1 thread, same timing loop for all, rounds interleaved) and, for
the artifacts whose interface matches the source, max error against PyTorch scaled to the output.

    .venv/bin/python scripts/bench_routes.py [--models cnn,transformer,gru] [--runs 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raw_onnx2tf(pt2: str, work: str) -> str:
    import onnx2tf
    import torch

    ep = torch.export.load(pt2)
    onnx_path = os.path.join(work, "raw.onnx")
    torch.onnx.export(ep, ep.example_inputs[0], onnx_path, dynamo=True, external_data=False)
    cwd = os.getcwd()
    os.chdir(work)
    try:  # without this file onnx2tf downloads one for image-like inputs (and fails offline)
        np.save("calibration_image_sample_data_20x128x128x3_float32.npy", np.zeros((1, 8, 8, 3), np.float32))
        onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=os.path.join(work, "o2t"), non_verbose=True)
    finally:
        os.chdir(cwd)
    return os.path.join(work, "o2t", "raw_float32.tflite")


def raw_litert(pt2: str, work: str) -> str:
    import litert_torch
    import torch

    ep = torch.export.load(pt2)
    path = os.path.join(work, "raw_litert.tflite")
    litert_torch.convert(ep.module(), ep.example_inputs[0]).export(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="cnn,transformer,gru")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    sys.path.insert(0, REPO)
    from fixtures.generate import generate
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert
    from fwconv.quiet import captured_output
    from fwconv.validators.inputs import synthetic_inputs
    from fwconv.validators.latency import LatencySettings
    from fwconv.validators.runners.litert_runner import LiteRTRunner

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, paths in generate(os.path.join(tmp, "models"), opts.models.split(",")).items():
            work = tempfile.mkdtemp(dir=tmp)
            with np.load(paths["npz"]) as d:
                feed = {k: d[k] for k in d.files}
            arts = {}
            for via in ("onnx", "litert"):
                arts[f"fwconv --via {via}"] = convert(paths["pt2"], "tflite", os.path.join(work, f"{via}.tflite"),
                                                      ConvertOptions(via=via, validate=False)).artifact
            with captured_output():
                arts["raw onnx2tf defaults"] = raw_onnx2tf(paths["pt2"], work)
                arts["raw litert-torch"] = raw_litert(paths["pt2"], work)
            import torch

            with torch.no_grad():
                ref = torch.export.load(paths["pt2"]).module()(*[torch.from_numpy(v) for v in feed.values()])
            ref = ref[0] if isinstance(ref, (tuple, list)) else ref
            runners, feeds, errors = {}, {}, {}
            for label, path in arts.items():
                runner = LiteRTRunner(path, threads=1).activate()
                specs = runner.input_specs()
                own = {s.name: v for s, v in zip(specs, feed.values())}
                if all(list(v.shape) == s.shape for s, v in zip(specs, own.values())):
                    feeds[label] = {k: v.astype(s.dtype) for (k, v), s in zip(own.items(), specs)}
                    out = next(iter(runner.infer(feeds[label]).values()))
                    errors[label] = (float(np.abs(out - ref.numpy()).max() / np.abs(ref.numpy()).max())
                                     if out.shape == tuple(ref.shape) else None)
                else:  # raw onnx2tf transposed the input to NHWC: time it on its own shapes
                    feeds[label] = synthetic_inputs(specs)
                    errors[label] = None
                runners[label] = runner
            samples = {label: [] for label in arts}
            order = list(arts)
            for _ in range(opts.rounds):
                for label in order:
                    stats = runners[label].measure_latency(feeds[label], LatencySettings(warmup_runs=20, runs=opts.runs))
                    samples[label].append(stats.p50_ms)
                order.reverse()
            for label, path in arts.items():
                rows.append((name, label, os.path.getsize(path) / 1024, statistics.median(samples[label]), errors[label],
                             [s.shape for s in runners[label].input_specs()]))
            print(f"done {name}", flush=True)
    print("\n| model | artifact | size (KiB) | LiteRT p50 (ms, 1 thread) | max err / scale vs PyTorch | input shapes |")
    print("|---|---|---|---|---|---|")
    for name, label, size, p50, err, shapes in rows:
        err_s = f"{err:.1e}" if err is not None else "n/a (I/O layout changed)"
        print(f"| {name} | {label} | {size:.1f} | {p50:.4f} | {err_s} | {shapes} |")


if __name__ == "__main__":
    main()
