"""fwconv against raw litert-torch `export_hf` on the same language model, side by side in one run.

Each run is a fresh process (imports included, as a user pays them), its wall time and peak RSS
measured from outside; raw and fwconv runs alternate. fwconv's run is the default conversion
(export, then the token-by-token validation, LiteRT-LM included, and the speed measurement);
`--no-validate` shows what fwconv adds without the proof. The artifact's time to first token and
decode speed come from fwconv's report, beside the source's in PyTorch.

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
    args = parser.parse_args()
    from fixtures.llm import save_tiny_lm

    with tempfile.TemporaryDirectory() as work:
        src = save_tiny_lm(os.path.join(work, "llama"), "llama", hidden_size=args.hidden, num_hidden_layers=args.layers,
                           intermediate_size=args.hidden * 3, num_attention_heads=8, num_key_value_heads=4,
                           vocab_size=8192)
        runs: dict[str, list] = {"raw export_hf": [], "fwconv (no validation)": [], "fwconv (default)": []}
        for rep in range(args.reps):
            runs["raw export_hf"].append(timed([PY, "-c", RAW.format(src=src, out=os.path.join(work, f"raw{rep}"))]))
            out = os.path.join(work, f"n{rep}.litertlm")
            runs["fwconv (no validation)"].append(timed([FWCONV, "convert", src, "--to", "litertlm", "-o", out,
                                                          "--no-validate"]))
            out = os.path.join(work, f"f{rep}.litertlm")
            report = os.path.join(work, f"f{rep}.json")
            runs["fwconv (default)"].append(timed([FWCONV, "convert", src, "--to", "litertlm", "-o", out,
                                                    "--json", report]))
        _print(runs, json.load(open(report)), args)


def _print(runs: dict, report: dict, args) -> None:
    raw_wall = statistics.median(w for w, _ in runs["raw export_hf"])
    raw_mem = statistics.median(m for _, m in runs["raw export_hf"])
    print(f"llama, hidden {args.hidden}, {args.layers} layers, vocab 8192; prefill 32, cache 128, fp32; "
          f"median of {args.reps} runs each, alternating")
    print("| run | wall s | vs raw | peak RSS MiB | vs raw |\n|---|---|---|---|---|")
    for name, values in runs.items():
        wall, mem = statistics.median(w for w, _ in values), statistics.median(m for _, m in values)
        print(f"| {name} | {wall:.1f} | {wall / raw_wall:.2f}x | {mem:.0f} | {mem / raw_mem:.2f}x |")
    print("\n| side | time to first token ms | prefill tok/s | decode tok/s | decode p50 / p90 ms | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for side, v in (report.get("speed") or {}).items():
        print(f"| {side} | {v['ttft_ms']:.2f} | {v['prefill_tokens_per_s']:.0f} | {v['decode_tokens_per_s']:.0f} | "
              f"{v['decode_p50_ms']:.3f} / {v['decode_p90_ms']:.3f} | {v['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
