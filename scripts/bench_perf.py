"""Benchmark: the default `fwconv torch2tflite` (validated) against the raw tools.

Per model (fixture cnn/transformer/gru and a transformers ResNet, each saved as a `.pt2`), each
variant runs as its own cold process, rounds interleaved so drift hits every variant alike:
  fwconv        `fwconv torch2tflite SRC` (default: --via auto, validated: litert-torch's route,
                the ONNX route only if that fails)
  fwconv-best   `--via best`: both routes, each validated (workers if 2 cores are idle)
  fwconv-best-2 the same with FWCONV_ROUTE_JOBS=2 (both routes side by side in worker processes)
  fwconv-best-inproc the same with FWCONV_ROUTE_JOBS=0 (both routes in-process, one after the other)
  raw-litert    torch.export.load -> litert_torch.convert(ep.module(), args).export(path)
  raw-onnx2tf   torch.onnx.export(ep, dynamo=True) -> onnx2tf.convert(not_use_onnxsim=True)
Reported: median wall time and median peak memory, where memory is the peak of the SUM of RSS
over the whole process tree (psutil, sampled every 50 ms), so worker processes count.
`--gate` also times `fwconv gate` on 4 fixture models x (onnx, tflite): a cold process per job
(FWCONV_GATE_WARM=0, the former executor), warm workers --jobs 1, warm workers --jobs 2; then the
warm runs again with every model listed --gate-copies times, for the steady-state cost per job.

    .venv/bin/python scripts/bench_perf.py [--rounds 3] [--models cnn,transformer,gru,hf_resnet] [--gate [--gate-copies 3]]
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

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)

RAW_LITERT = r"""
import sys, torch, litert_torch
ep = torch.export.load(sys.argv[1])
litert_torch.convert(ep.module(), ep.example_inputs[0]).export(sys.argv[2] + "/raw.tflite")
"""
RAW_ONNX2TF = r"""
import os, sys, numpy as np, torch, onnx2tf
src, work = sys.argv[1], sys.argv[2]
ep = torch.export.load(src)
onnx_path = os.path.join(work, "model.onnx")
torch.onnx.export(ep, ep.example_inputs[0], onnx_path, dynamo=True, external_data=False)
os.chdir(work)
np.save("calibration_image_sample_data_20x128x128x3_float32.npy", np.zeros((1, 8, 8, 3), np.float32))
onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=os.path.join(work, "out"),
                non_verbose=True, not_use_onnxsim=True)
assert any(f.endswith("_float32.tflite") for f in os.listdir(os.path.join(work, "out")))
"""


def measured(cmd: list[str], cwd: str, env: dict | None = None, interval: float = 0.05) -> tuple[float, float]:
    """(wall seconds, peak of the summed RSS of the process and all its descendants, in MB)."""
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""), **(env or {}))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root] + root.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(interval)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {(out + err)[-800:]}")
    return elapsed, peak / 2**20


def thirdparty_pt2(path: str, arch: str = "resnet") -> str:
    """A transformers model (random weights, fixtures/thirdparty.py) as a .pt2. (A BERT .pt2 does
    not load in fwconv today: torch.export.load fails deserializing it; the factory works.)"""
    import torch

    from fixtures import thirdparty

    factory = getattr(thirdparty, thirdparty.THIRDPARTY[arch][0])
    args = (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)),)
    torch.export.save(torch.export.export(factory(), args), path)
    return path


def sources(tmp: str, names: list[str]) -> dict[str, str]:
    from fixtures.generate import generate

    os.makedirs(os.path.join(tmp, "models"), exist_ok=True)
    fixture = [n for n in names if not n.startswith("hf_")]
    found = {n: p["pt2"] for n, p in generate(os.path.join(tmp, "models"), fixture).items()} if fixture else {}
    for name in names:
        if name.startswith("hf_"):  # hf_resnet, hf_vit, hf_convnext: image models of fixtures/thirdparty.py
            found[name] = thirdparty_pt2(os.path.join(tmp, "models", f"{name}.pt2"), name[3:])
    return found


def variants(src: str, chosen: list[str]) -> dict:
    fwconv = os.path.join(VENV_BIN, "fwconv")
    conv = lambda w: [fwconv, "torch2tflite", src, "-o", os.path.join(w, "m.tflite")]
    best = lambda w: conv(w) + ["--via", "best"]
    every = {
        "fwconv": (conv, {}),
        "fwconv-best": (best, {}),
        "fwconv-best-2": (best, {"FWCONV_ROUTE_JOBS": "2"}),
        "fwconv-best-inproc": (best, {"FWCONV_ROUTE_JOBS": "0"}),
        "raw-litert": (lambda w: [sys.executable, "-c", RAW_LITERT, src, w], {}),
        "raw-onnx2tf": (lambda w: [sys.executable, "-c", RAW_ONNX2TF, src, w], {}),
    }
    return {k: every[k] for k in chosen}


def bench_models(tmp: str, opts) -> dict:
    results = {}
    for name, src in sources(tmp, opts.models.split(",")).items():
        runs = variants(src, opts.variants.split(","))
        samples = {k: [] for k in runs}
        for _ in range(opts.rounds):
            for key, (make, env) in runs.items():
                with tempfile.TemporaryDirectory(dir=tmp) as work:
                    samples[key].append(measured(make(work), work, env))
        results[name] = {k: {"wall_s": statistics.median(s[0] for s in v), "peak_mb": statistics.median(s[1] for s in v),
                             "samples": v} for k, v in samples.items()}
        print(name, {k: (round(r["wall_s"], 1), round(r["peak_mb"])) for k, r in results[name].items()}, flush=True)
    return results


def print_table(results: dict) -> None:
    """Wall / tree-peak per variant, then each fwconv variant's ratios to the raw tools."""
    keys = list(next(iter(results.values())))
    ours = [k for k in keys if k.startswith("fwconv")]
    print("\n| model | " + " | ".join(f"{k} (s / MB)" for k in keys) + " | "
          + " | ".join(f"{k}: time, memory vs raw-litert; time vs raw-onnx2tf" for k in ours) + " |")
    print("|---|" + "---|" * (len(keys) + len(ours)))
    for name, r in results.items():
        cells = [f"{r[k]['wall_s']:.1f} / {r[k]['peak_mb']:.0f}" for k in keys]
        for k in ours:
            ratio = lambda raw, what: f"{r[k][what] / r[raw][what]:.2f}" if raw in r else "-"
            cells.append(f"{ratio('raw-litert', 'wall_s')}, {ratio('raw-litert', 'peak_mb')}; {ratio('raw-onnx2tf', 'wall_s')}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def gate_config(tmp: str, copies: int) -> tuple[str, int]:
    """A gate config with the fixture models x (onnx, tflite), each model listed `copies` times
    (under different names, so every copy is converted): (path, number of jobs)."""
    from fixtures.generate import generate

    models = generate(os.path.join(tmp, "gate-models"), ["cnn", "mlp", "transformer", "gru"])
    config = os.path.join(tmp, f"fwconv-{copies}.toml")
    with open(config, "w") as f:
        f.write(f'[gate]\noutput_dir = "out-{copies}"\n')
        for copy in range(copies):
            for name, paths in models.items():
                f.write(f'\n[[model]]\nname = "{name}{copy}"\nsource = "{paths["pt2"]}"\ntargets = ["onnx", "tflite"]\n')
    return config, 2 * len(models) * copies


def bench_gate(tmp: str, opts) -> dict:
    """`fwconv gate` (no cache): a cold process per job, warm workers --jobs 1 and --jobs 2, on 8
    jobs; then warm --jobs 1 and 2 on 8 x `--gate-copies` jobs, whose difference from the 8-job
    runs is the steady-state cost per job once the workers are warm (their imports paid)."""
    runs = [("cold-1", 1, "0", 1), ("warm-1", 1, "1", 1), ("warm-2", 2, "1", 1)]
    if opts.gate_copies > 1:
        runs += [(f"warm-1 x{opts.gate_copies}", 1, "1", opts.gate_copies), (f"warm-2 x{opts.gate_copies}", 2, "1", opts.gate_copies)]
    times = {}
    for label, jobs, warm, copies in runs:
        config, n_jobs = gate_config(tmp, copies)
        cmd = [os.path.join(VENV_BIN, "fwconv"), "gate", config, "--jobs", str(jobs), "--no-cache"]
        wall, peak = measured(cmd, tmp, {"FWCONV_GATE_WARM": warm})
        times[label] = {"wall_s": wall, "peak_mb": peak, "jobs": n_jobs}
    out = {"runs": times, "speedup": times["warm-1"]["wall_s"] / times["warm-2"]["wall_s"]}
    print("\ngate: " + ", ".join(f"{k} {v['wall_s']:.1f} s ({v['jobs']} jobs, {v['wall_s'] / v['jobs']:.2f} s/job, "
                                f"{v['peak_mb']:.0f} MB)" for k, v in times.items())
          + f"; --jobs 2 / --jobs 1 speedup (8 jobs) {out['speedup']:.2f}x", flush=True)
    if opts.gate_copies > 1:
        c = opts.gate_copies
        extra = lambda j: (times[f"warm-{j} x{c}"]["wall_s"] - times[f"warm-{j}"]["wall_s"]) / (times[f"warm-{j} x{c}"]["jobs"] - 8)
        out["steady_s_per_job"] = {"jobs-1": extra(1), "jobs-2": extra(2)}
        out["steady_speedup"] = extra(1) / extra(2)
        print(f"steady state (warm workers): --jobs 1 {extra(1):.2f} s/job, --jobs 2 {extra(2):.2f} s/job; "
              f"throughput speedup {out['steady_speedup']:.2f}x", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="cnn,transformer,gru,hf_resnet")
    ap.add_argument("--variants", default="fwconv,fwconv-best,raw-litert,raw-onnx2tf")
    ap.add_argument("--gate", action="store_true", help="also time fwconv gate --jobs 1 vs --jobs 2")
    ap.add_argument("--gate-copies", type=int, default=3, help="with --gate: also run each model this many times "
                    "(8 x N jobs) to measure the steady-state cost per job")
    ap.add_argument("--json", default=os.path.join(REPO, "out", "bench_perf.json"))
    opts = ap.parse_args()
    sys.path.insert(0, REPO)
    out = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "rounds": opts.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        if opts.models:
            out["models"] = bench_models(tmp, opts)
            print_table(out["models"])
        if opts.gate:
            out["gate"] = bench_gate(tmp, opts)
    os.makedirs(os.path.dirname(opts.json), exist_ok=True)
    with open(opts.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
