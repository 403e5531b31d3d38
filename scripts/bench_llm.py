"""fwconv against raw litert-torch `export_hf` on the same language model, side by side in one run,
and fwconv's ExecuTorch `.pte` and ONNX generators from the same model directory.

Each run is a fresh process (imports included, as a user pays them), its wall time and peak RSS
measured from outside; raw and fwconv runs alternate. fwconv's run is the default conversion
(export, then the token-by-token validation, LiteRT-LM included, and the speed measurement);
`--no-validate` shows what fwconv adds without the proof. The artifact's time to first token and
decode speed come from fwconv's report, beside the source's in PyTorch. For `.pte` and ONNX there
is no raw tool that writes a generator with a cache from a model directory here (optimum-executorch
and optimum-onnx cannot be installed beside this transformers), so their rows are fwconv's export
alone and with its proof.

    .venv/bin/python scripts/bench_llm.py [--reps 2] [--hidden 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
PY = sys.executable
FWCONV = os.path.join(os.path.dirname(PY), "fwconv")
RAW = ("from litert_torch.generative.export_hf import export; "
       "export.export(model={src!r}, output_dir={out!r}, prefill_lengths=[32], cache_length=128, "
       "quantization_recipe='none', bundle_litert_lm=True)")
MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
           "print(rc, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of `cmd` in its own process tree, measured from a wrapper."""
    out = subprocess.run([PY, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "FWCONV_PROGRESS": "0"}).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--targets", default="litertlm,pte,onnx")
    args = parser.parse_args()
    from fixtures.llm import save_tiny_lm

    with tempfile.TemporaryDirectory() as work:
        src = save_tiny_lm(os.path.join(work, "llama"), "llama", hidden_size=args.hidden, num_hidden_layers=args.layers,
                           intermediate_size=args.hidden * 3, num_attention_heads=8, num_key_value_heads=4,
                           vocab_size=8192)
        runs: dict[str, list] = {"raw export_hf": []}
        reports: dict[str, dict] = {}
        for rep in range(args.reps):
            runs["raw export_hf"].append(timed([PY, "-c", RAW.format(src=src, out=os.path.join(work, f"raw{rep}"))]))
            for target in args.targets.split(","):
                reports[target] = _fwconv_runs(runs, src, target, os.path.join(work, f"{target}{rep}"))
        _print(runs, reports, args)


def _fwconv_runs(runs: dict, src: str, target: str, stem: str) -> dict:
    """fwconv to `target` without and with its validation (each in its own folder: an ONNX brings its
    genai_config.json); the validated run's report."""
    os.makedirs(f"{stem}n"), os.makedirs(stem)
    timing = timed([FWCONV, "convert", src, "--to", target, "-o", f"{stem}n/model.{target}", "--no-validate"])
    runs.setdefault(f"fwconv -> {target} (no validation)", []).append(timing)
    timing = timed([FWCONV, "convert", src, "--to", target, "-o", f"{stem}/model.{target}", "--json",
                    f"{stem}.json"])
    runs.setdefault(f"fwconv -> {target} (default)", []).append(timing)
    return json.load(open(f"{stem}.json"))


def _print(runs: dict, reports: dict, args) -> None:
    raw_wall = statistics.median(w for w, _ in runs["raw export_hf"])
    raw_mem = statistics.median(m for _, m in runs["raw export_hf"])
    print(f"llama, hidden {args.hidden}, {args.layers} layers, vocab 8192; cache 128 (LiteRT prefill 32), fp32; "
          f"median of {args.reps} runs each, alternating")
    print("| run | wall s | vs raw export_hf | peak RSS MiB | vs raw export_hf |\n|---|---|---|---|---|")
    for name, values in runs.items():
        wall, mem = statistics.median(w for w, _ in values), statistics.median(m for _, m in values)
        print(f"| {name} | {wall:.1f} | {wall / raw_wall:.2f}x | {mem:.0f} | {mem / raw_mem:.2f}x |")
    print("\n| side | time to first token ms | prefill tok/s | decode tok/s | decode p50 / p90 ms | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    seen = set()
    for report in reports.values():
        for side, v in (report.get("speed") or {}).items():
            if side in seen:
                continue
            seen.add(side)
            print(f"| {side} | {v['ttft_ms']:.2f} | {v['prefill_tokens_per_s']:.0f} | {v['decode_tokens_per_s']:.0f} | "
                  f"{v['decode_p50_ms']:.3f} / {v['decode_p90_ms']:.3f} | {v['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
