"""Measure what quantized artifacts of real CNNs look like next to their source, and what planted
faults look like at the same precision: the numbers the quantized verdict's thresholds come from
(README, Validation). Random-init third-party models (transformers), no downloads.

  .venv/bin/python scripts/measure_quantization.py [--models mobilenetv2,resnet50] [--size 64]

For each model: the source (.pt2), a copy with one conv weight perturbed, and the same
architecture with other weights ("a different model"), each converted to fp16 and int8 (ONNX
route, calibrated on 32 seeded normal samples, each validated against its own source so int8 gets
selective quantization where full int8 fails), then run in LiteRT against the clean source on 16
held-out samples. Prints one JSON line per (model, variant, precision): worst cosine and SNR,
top-1 agreement, top-5 overlap, worst scaled element error, and whether the current defaults pass."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export(module, path: str, size: int) -> str:
    import torch

    ep = torch.export.export(module, (torch.zeros(1, 3, size, size),))
    torch.export.save(ep, path)
    return path


def perturb_one_weight(module, which: int = 3, delta: float = 1.0):
    """One element of the `which`-th conv kernel += delta (the same kind of fault as tests/test_debug.py)."""
    import torch

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        convs[which].weight.view(-1)[7] += delta
    return module


def held_out(size: int, n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(100)
    return [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(n)]


def summarize(refs, cands, precision: str) -> dict:
    from fwconv.validators.metrics import Tolerance, compare_arrays

    results = [compare_arrays("y", r, c, Tolerance(precision)) for r, c in zip(refs, cands)]
    m = [r.metrics for r in results]
    return {"cosine_min": min(x["cosine"] for x in m), "snr_db_min": min(x["snr_db"] for x in m),
            "top1": float(np.mean([x.get("argmax_agreement", np.nan) for x in m])),
            "top5": float(np.mean([x.get("top5_overlap", np.nan) for x in m])),
            "scaled_max_err": max(x["scaled_max_err"] for x in m),
            "passed_now": all(r.passed for r in results), "failure": next((r.failure for r in results if r.failure), None)}


def run_tflite(path: str, xs):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    name = list(runner.get_input_details())[0]
    return [list(runner(**{name: x}).values())[0] for x in xs]


def run_source(module, xs):
    import torch

    with torch.no_grad():
        return [module(torch.from_numpy(x)).numpy() for x in xs]


def main() -> None:
    from fixtures import thirdparty
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert
    from fwconv.errors import FwconvError
    from fwconv.validators.compare import ValidateSettings
    from fwconv.validators.metrics import Tolerance

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenetv2")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--precisions", default="fp16,int8")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="fwconv_qmeasure_")
    calib = os.path.join(work, "calib.npz")
    np.savez(calib, x=np.random.default_rng(42).standard_normal((32, 1, 3, args.size, args.size)).astype(np.float32))
    xs = held_out(args.size)
    for name in args.models.split(","):
        build = getattr(thirdparty, f"build_{name}")
        clean = build()
        refs = run_source(clean, xs)
        other = build()
        import torch
        torch.manual_seed(1)
        for p in other.parameters():  # same architecture, other weights
            torch.nn.init.normal_(p, std=float(p.detach().std()) if p.numel() > 1 else 0.02)
        variants = {"source": clean, "perturbed": perturb_one_weight(build()), "other": other.eval()}
        for variant, module in variants.items():
            if variant != "source":
                print(json.dumps({"model": name, "variant": variant, "precision": "fp32(torch)",
                                  **summarize(refs, run_source(module, xs), "fp32")}), flush=True)
            src = export(module, os.path.join(work, f"{name}_{variant}.pt2"), args.size)
            for precision in args.precisions.split(","):
                out = os.path.join(work, f"{name}_{variant}_{precision}.tflite")
                extra = {"calibration": calib} if precision == "int8" else {}
                # validated against its own source, so int8 gets selective quantization where it needs it
                options = ConvertOptions(quantize=precision, via="onnx", force=True, keep_failed=True, **extra)
                try:
                    result = convert(src, "tflite", out, options, ValidateSettings(latency=None, tolerance=Tolerance(precision)))
                    quant = result.manifest.extra.get("quantization") or {}
                except FwconvError as exc:
                    print(json.dumps({"model": name, "variant": variant, "precision": precision, "error": exc.one_line()}))
                    continue
                row = summarize(refs, run_tflite(out, xs), precision)
                print(json.dumps({"model": name, "variant": variant, "precision": precision,
                                  "size_kib": round(os.path.getsize(out) / 1024, 1),
                                  "float_ops": quant.get("float_ops"), **row}), flush=True)


if __name__ == "__main__":
    main()
