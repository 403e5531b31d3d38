"""Which route's artifact a conversion keeps: the record of each route's attempt, the rule that
picks among those that passed (fastest, ties to the smaller, then the earlier), the error shown
when none converted, and whether routes race (`--via best`) or stop at the first that passes."""

from __future__ import annotations

import dataclasses

from fwconv.convert.job import Artifact, Job
from fwconv.convert.options import ConvertOptions
from fwconv.manifest import size_of


@dataclasses.dataclass
class RouteTry:
    """One route's attempt (convert/pipeline.run_route): what it made, the verdict or the error,
    how long it took; for `--via auto`'s side-by-side report."""

    label: str
    artifact: Artifact | None
    job: Job | None
    report: object | None = None  # the ValidationReport, when validated
    error: Exception | None = None
    route: list | None = None  # the edges it went along
    skipped: str | None = None  # why this route was not run (`--via auto`: an earlier one passed)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """skipped | error | not validated | the verdict (pass, parity_failed, latency_exceeded)."""
        if self.skipped:
            return "skipped"
        if self.error is not None:
            return "error"
        return "not validated" if self.report is None else self.report.status

    @property
    def passed(self) -> bool:
        """Kept as is: converted and passed parity, or converted with validation off."""
        return self.artifact is not None and (self.report is None or self.report.parity_passed)

    def summary(self) -> dict:
        if self.skipped:
            return {"route": self.label, "status": "skipped", "why": self.skipped}
        d = {"route": self.label, "status": self.status}
        if self.error:
            d["error"] = getattr(self.error, "one_line", lambda: str(self.error))()
        if self.artifact is not None:
            d["size_bytes"] = size_of(self.artifact.path)
        if self.report is not None and "candidate" in self.report.latency:
            d["p50_ms"] = round(self.report.latency["candidate"].p50_ms, 4)
            d["std_ms"] = round(self.report.latency["candidate"].std_ms or 0.0, 4)
            d["worst_scaled_err"] = max((o.metrics.get("scaled_max_err") or 0) for o in self.report.outputs)
        return d


def most_telling_error(tries: list[RouteTry]):
    """When every route failed: an unsupported op (exit 5) says most, then bad input, then the
    rest; the other routes' errors go in the hint."""
    from fwconv.errors import InputError, UnsupportedOpError

    rank = lambda t: 0 if isinstance(t.error, UnsupportedOpError) else 1 if isinstance(t.error, InputError) else 2
    tries = [t for t in tries if t.error is not None]
    best = min(tries, key=rank)
    others = "; ".join(f"{t.label}: {t.error.one_line()}" for t in tries if t is not best)
    best.error.hint = "; ".join(filter(None, [best.error.hint, f"other routes: {others}" if others else None]))
    return best.error


# Two routes' p50 latencies this close are a tie: on this machine kind a repeat run moved p50 by up
# to ~20% under load, and picking by noise made `--via auto` give different artifacts run to run.
TIE_RATIO = 0.25
TIE_FLOOR_MS = 0.05  # below this, two timings of a tiny model differ by scheduler noise alone


def choose(tries: list[RouteTry]) -> RouteTry:
    """The fastest artifact that passed parity; routes whose p50 is within TIE_RATIO (or two
    standard deviations, or TIE_FLOOR_MS) of the fastest tie, and a tie goes to the smaller artifact, then to the
    earlier route in preference order, so the same input gives the same artifact. Without
    latency, the first that passed; with no validation, the first that converted."""
    done = [t for t in tries if t.artifact is not None]
    passed = [t for t in done if t.report is not None and t.report.parity_passed]
    timed = [t for t in passed if "candidate" in t.report.latency]
    if timed:
        stats = lambda t: t.report.latency["candidate"]
        fastest = min(stats(t).p50_ms for t in timed)
        noise = max(TIE_RATIO * fastest, TIE_FLOOR_MS, 2 * max(stats(t).std_ms or 0.0 for t in timed))
        tied = [t for t in timed if stats(t).p50_ms <= fastest + noise]
        return min(tied, key=lambda t: (size_of(t.artifact.path), tries.index(t)))
    if passed:
        return passed[0]
    unvalidated = [t for t in done if t.report is None]
    return unvalidated[0] if unvalidated else done[0]


# Why `--via auto` stops at the first route that passes: running the second route too (`--via best`)
# cost 1.6-2.0x raw litert-torch's wall time and 2.2-2.3x its memory (TensorFlow + onnx2tf on top),
# while litert-torch's artifact was as fast or faster in every model measured (README, Benchmarks).
FIRST_PASS_SKIP = "an earlier route passed (--via best converts along every route and keeps the fastest)"


def races(options: ConvertOptions) -> bool:
    """Every route converted and the fastest passing kept (`--via best`, `--backend auto`), rather
    than the first route that passes."""
    return options.via == "best" or options.backend == "auto"
