"""Latency measurement: warm-up, then timed runs until both a count and a minimum time are met.

The timed body is the runner's pre-staged call (inputs already converted to the runtime's
tensors), followed by the runner's synchronize() so GPU work is counted when it finishes,
not when it is queued.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np


@dataclasses.dataclass
class LatencySettings:
    warmup_runs: int = 3
    warmup_seconds: float = 0.0
    runs: int = 20
    min_seconds: float = 0.0


@dataclasses.dataclass
class LatencyStats:
    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    warmup_runs: int
    load_seconds: float | None = None
    first_inference_ms: float | None = None
    memory_mb: float | None = None  # peak RSS of an isolated runner, else RSS growth while it ran
    memory_kind: str | None = None
    threads: int | None = None
    # every timed run (ms, capped at MAX_SAMPLES): the HTML report draws the distribution;
    # the text/Markdown tables show only the summary numbers above
    samples_ms: list[float] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


MAX_SAMPLES = 2000


def kept_samples(ms: np.ndarray, cap: int = MAX_SAMPLES) -> list[float]:
    """At most `cap` samples, evenly spread over the run (so drift stays visible), rounded to
    0.1 µs to keep the JSON small."""
    if ms.size > cap:
        ms = ms[np.linspace(0, ms.size - 1, cap).round().astype(int)]
    return [round(float(v), 4) for v in ms]


def summarize(samples_s: list[float], warmup_runs: int) -> LatencyStats:
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(
        runs=len(ms), mean_ms=float(ms.mean()), std_ms=float(ms.std()), min_ms=float(ms.min()),
        max_ms=float(ms.max()), p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
        warmup_runs=warmup_runs, samples_ms=kept_samples(ms),
    )


def measure(call: Callable[[], object], settings: LatencySettings,
            synchronize: Callable[[], None] | None = None) -> LatencyStats:
    """Time `call` after warm-up. `synchronize` (GPU runners) runs inside the timed region."""
    clock = time.perf_counter
    body = call if synchronize is None else (lambda: (call(), synchronize()))
    warm = 0
    start = clock()
    while warm < settings.warmup_runs or clock() - start < settings.warmup_seconds:
        body()
        warm += 1
    runs = max(settings.runs, 1)
    samples = [0.0] * runs
    for i in range(runs):  # the count first, in a tight loop ...
        t0 = clock()
        body()
        samples[i] = clock() - t0
    deadline = clock() + settings.min_seconds - sum(samples)
    while clock() < deadline:  # ... then top up to min_seconds
        t0 = clock()
        body()
        samples.append(clock() - t0)
    return summarize(samples, warm)
