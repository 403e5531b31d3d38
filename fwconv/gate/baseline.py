"""Latency baselines and a noise-aware regression check.

A baseline stores, per model x target, the candidate's median latency (p50 over the timed runs)
and its spread ((p90 - p50) / p50). A job regresses only if its p50 exceeds the baseline by more
than max(threshold, 2 x the larger relative spread), and only after the artifact is re-timed
twice more and the median of the three p50s still does: one noisy sample never fails a gate.
"""

from __future__ import annotations

import json
import platform
import statistics
from typing import Any

from fwconv.errors import InputError
from fwconv.gate.result import JobResult, Status

SCHEMA = "fwconv.latency-baseline"


def save_baseline(path: str, results: list[JobResult], *, force: bool = False, protected: list[str] = ()) -> int:
    """Write this run's latencies, by fwconv's output rules (staged, --force, never an input)."""
    from fwconv.staging import write_text

    entries = {}
    for r in results:
        lat = r.latency
        if lat and r.status in (Status.PASS, Status.LATENCY_EXCEEDED):
            entries[r.id] = {"p50_ms": lat["p50_ms"], "spread": (lat["p90_ms"] - lat["p50_ms"]) / lat["p50_ms"],
                                "runs": lat["runs"]}
    write_text(path, json.dumps({"schema": SCHEMA, "schema_version": 1, "machine": platform.machine(),
                                 "processor": platform.processor(), "entries": entries}, indent=2),
               force=force, protected=protected)
    return len(entries)


def load_baseline(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read latency baseline {path}: {exc}") from exc
    if data.get("schema") != SCHEMA:
        raise InputError(f"{path} is not an fwconv latency baseline")
    return data["entries"]


def retime(artifact: str, repeats: int = 2, runs: int = 50) -> list[float]:
    """Time the artifact again (fresh runner, seeded inputs) and return each repeat's p50."""
    from fwconv.validators.inputs import synthetic_inputs
    from fwconv.validators.latency import LatencySettings
    from fwconv.validators.runners import make_runner

    with make_runner(artifact) as runner:
        feed = synthetic_inputs(runner.input_specs(), seed=0, int_bounds=runner.index_bounds())
        return [runner.measure_latency(feed, LatencySettings(warmup_runs=10, runs=runs)).p50_ms for _ in range(repeats)]


def check_regressions(results: list[JobResult], baseline: dict[str, Any], threshold: float, retimer=retime) -> None:
    """Mark results that regressed (status latency_regressed, exit code 4) in place."""
    for r in results:
        base, lat = baseline.get(r.id), r.latency
        if not base or not lat or r.status is not Status.PASS:
            continue
        spread = (lat["p90_ms"] - lat["p50_ms"]) / lat["p50_ms"]
        allowed = max(threshold, 2 * max(spread, base["spread"]))
        limit = base["p50_ms"] * (1 + allowed)
        r.latency_check = {"baseline_p50_ms": base["p50_ms"], "p50_ms": lat["p50_ms"], "allowed_increase": allowed}
        if lat["p50_ms"] <= limit:
            continue
        samples = [lat["p50_ms"]] + retimer(r.artifact)
        median = statistics.median(samples)
        r.latency_check.update({"retimed_p50s_ms": samples, "median_p50_ms": median})
        if median > limit:
            r.fail(Status.LATENCY_REGRESSED, f"latency regressed: median p50 {median:.3f} ms vs baseline "
                                             f"{base['p50_ms']:.3f} ms (allowed +{allowed:.0%})")
