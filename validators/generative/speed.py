"""Speed of a generator as an app sees it: time to first token, prefill and decode tokens/s (decode
p50/p90 per token), and the peak memory of a process that holds only that side (each side is
measured in its own spawned process, so one runtime's memory is not counted against the other)."""

from __future__ import annotations

import multiprocessing
import resource

import numpy as np


def _measure(kind: str, path: str, prompt: list[int], steps: int, threads: int | None, warmup: int,
             trust: tuple[bool, bool] = (False, False)) -> dict:
    """In a fresh process: load one side, warm it up, then time one generation."""
    generator = open_generator(kind, path, threads, trust)
    for _ in range(warmup):
        generator.start(prompt)
    first = generator.start(prompt)
    ttft, token, step_times = generator.prefill_seconds, int(np.argmax(first)), []
    for _ in range(steps):
        token = int(np.argmax(generator.step(token)))
        step_times.append(generator.last_step_seconds)
    times = np.array(step_times) * 1000
    return {"ttft_ms": ttft * 1000, "prefill_tokens_per_s": len(prompt) / max(ttft, 1e-9),
            "decode_tokens_per_s": 1000 / max(float(times.mean()), 1e-9), "decode_p50_ms": float(np.percentile(times, 50)),
            "decode_p90_ms": float(np.percentile(times, 90)), "steps": steps, "prompt_tokens": len(prompt),
            "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float | None:
    """This process's own peak resident memory (VmHWM: ru_maxrss would carry the parent's over exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_generator(kind: str, path: str, threads: int | None = None, trust: tuple[bool, bool] = (False, False)):
    """A generator by kind: 'pytorch' (a model directory; `trust`: remote code, pickle, as the
    user allowed), 'litert' (a generative .tflite), 'executorch' (.pte) or 'onnxruntime' (ONNX)."""
    from fwconv.validators.generative.runners import LiteRTGenerator, TorchGenerator

    if kind == "pytorch":
        import torch

        from fwconv.models.hf import load_causal_lm, read_hf_dir

        if threads:
            torch.set_num_threads(threads)
        return TorchGenerator(load_causal_lm(read_hf_dir(path, trust_pickle=trust[1]), trust_remote_code=trust[0]))
    if kind == "litert":
        return LiteRTGenerator(path, threads=threads)
    from fwconv.validators.generative import open_candidate

    return open_candidate(path, threads)


def measure(sides: dict[str, tuple[str, str]], prompt: list[int], steps: int, *, threads: int | None = None,
            warmup: int = 1, trust: tuple[bool, bool] = (False, False)) -> dict:
    """{side name: (kind, path)} -> {side name: figures}, one spawned process per side, in turn."""
    from fwconv.procs import quiet_worker, sigint_ignored
    from fwconv.quiet import DEBUG

    context = multiprocessing.get_context("spawn")
    figures = {}
    for name, (kind, path) in sides.items():
        with sigint_ignored():
            pool = context.Pool(1, initializer=quiet_worker, initargs=(DEBUG["on"],))
        with pool:
            figures[name] = pool.apply(_measure, (kind, path, prompt, steps, threads, warmup, trust))
    return figures
