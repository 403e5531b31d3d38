"""The comparator: feed identical inputs to a reference and a candidate runner, align their
tensors, compare every output, measure latency, and return one typed report."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fwconv.errors import InputError
from fwconv.specs import TensorSpec, bind_arrays, name_positional, specs_of_arrays
from fwconv.validators.align import Binding, bind
from fwconv.validators.inputs import input_sets
from fwconv.validators.latency import LatencySettings, LatencyStats
from fwconv.validators.metrics import OutputParity, Tolerance, compare_arrays

REPORT_SCHEMA_VERSION = 1


@dataclasses.dataclass
class ValidateSettings:
    device: str = "cpu"
    threads: int | None = None
    samples: int = 1
    seed: int = 0
    ranges: dict | None = None
    tolerance: Tolerance = dataclasses.field(default_factory=Tolerance)
    per_output: dict[str, Tolerance] = dataclasses.field(default_factory=dict)
    latency: LatencySettings | None = dataclasses.field(default_factory=LatencySettings)
    max_latency_ratio: float | None = None
    user_map: dict | None = None
    dynamic: tuple = ()  # fwconv.dynamic.DynamicDim: also compare at other sizes of these dims


@dataclasses.dataclass
class ValidationReport:
    reference: dict[str, Any]
    candidate: dict[str, Any]
    samples: int
    seed: int | None
    inputs: list[dict[str, Any]]
    input_bindings: list[dict[str, Any]]
    output_bindings: list[dict[str, Any]]
    outputs: list[OutputParity]
    latency: dict[str, LatencyStats] = dataclasses.field(default_factory=dict)
    latency_ratio: float | None = None
    max_latency_ratio: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    shapes: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # parity at other input sizes

    @property
    def parity_passed(self) -> bool:
        return bool(self.outputs) and all(o.passed for o in self.outputs) and all(s["passed"] for s in self.shapes)

    @property
    def latency_passed(self) -> bool:
        return self.max_latency_ratio is None or self.latency_ratio is None or self.latency_ratio <= self.max_latency_ratio

    @property
    def status(self) -> str:
        if not self.parity_passed:
            return "parity_failed"
        return "pass" if self.latency_passed else "latency_exceeded"

    def failures(self) -> list[str]:
        lines = []
        for o in self.outputs:
            if not o.passed:
                w = o.worst
                where = (f" worst at index {w['index']} (sample {o.sample}): reference={w['reference']:.6g} "
                         f"candidate={w['candidate']:.6g}") if w else ""
                lines.append(f"output '{o.name}': {o.failure}.{where}")
        for s in self.shapes:
            if not s["passed"]:
                lines.append(f"at input shapes {s['inputs']}: {s['failure']}")
        if not self.latency_passed:
            lines.append(f"latency ratio {self.latency_ratio:.2f} > budget {self.max_latency_ratio:.2f}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "fwconv.validation", "schema_version": REPORT_SCHEMA_VERSION, "status": self.status,
            "reference": self.reference, "candidate": self.candidate, "samples": self.samples, "seed": self.seed,
            "inputs": self.inputs, "input_bindings": self.input_bindings, "output_bindings": self.output_bindings,
            "outputs": [o.to_dict() for o in self.outputs],
            "latency": {k: v.to_dict() for k, v in self.latency.items()},
            "latency_ratio": self.latency_ratio, "max_latency_ratio": self.max_latency_ratio,
            "failures": self.failures(), "notes": self.notes, "shapes": self.shapes,
        }


def _better_worse(a: OutputParity | None, b: OutputParity) -> OutputParity:
    """Keep the worse of two results for the same output (failure first, then larger error)."""
    if a is None:
        return b
    if a.passed != b.passed:
        return a if not a.passed else b
    return b if b.metrics.get("scaled_max_err", 0) > a.metrics.get("scaled_max_err", 0) else a


def _cast_for(feed_value: np.ndarray, spec: TensorSpec | None, notes: list[str], name: str) -> np.ndarray:
    if spec is None or spec.dtype in (None, feed_value.dtype.name) or spec.dtype.startswith("tensor"):
        return feed_value
    target = np.dtype(spec.dtype)
    if np.can_cast(feed_value.dtype, target, "same_kind") or (
            np.issubdtype(feed_value.dtype, np.integer) and np.issubdtype(target, np.integer)):
        note = f"input '{name}' cast {feed_value.dtype.name} -> {target.name} for the candidate"
        if note not in notes:
            notes.append(note)
        return feed_value.astype(target)
    raise InputError(f"input '{name}' is {feed_value.dtype.name} but the candidate takes {target.name}")


def compare_runners(reference, candidate, *, settings: ValidateSettings, ref_specs: list[TensorSpec] | None = None,
                    user_inputs: dict[str, np.ndarray] | None = None, candidate_interface=None,
                    labels: tuple[dict, dict] = ({}, {})) -> ValidationReport:
    """Both runners must be active. Returns the report; raises only for errors (not for failures).
    `candidate_interface` (fwconv.interface.Interface) says how the candidate's tensors are the
    reference's, where a conversion recorded it."""
    notes: list[str] = []
    plan = InputPlan.make(reference, candidate, settings, ref_specs, user_inputs, candidate_interface, notes)
    worst: dict[str, OutputParity] = {}
    out_bindings: list[Binding] = []
    first_ms: dict[str, float] = {}
    for i, feed in enumerate(plan.feeds):
        ref_out = reference.infer(feed)
        cand_out = candidate.infer(plan.to_candidate(feed))
        if i == 0:
            first_ms = {"reference": reference.last_inference_seconds * 1e3,
                        "candidate": candidate.last_inference_seconds * 1e3}
            out_bindings = _output_bindings(ref_out, cand_out, settings, candidate_interface, notes)
        for b in out_bindings:
            tol = settings.per_output.get(b.reference, settings.tolerance)
            result = compare_arrays(b.reference, ref_out[b.reference], b.to_reference(cand_out[b.candidate]), tol, sample=i)
            worst[b.reference] = _better_worse(worst.get(b.reference), result)
    source = "user" if user_inputs is not None else "synthetic"
    report = ValidationReport(
        reference=labels[0], candidate=labels[1], samples=len(plan.feeds),
        seed=None if user_inputs is not None else settings.seed,
        inputs=[{"name": s.name, "shape": s.shape, "dtype": s.dtype, "source": source} for s in plan.specs],
        input_bindings=[b.to_dict() for b in plan.bindings], output_bindings=[b.to_dict() for b in out_bindings],
        outputs=[worst[b.reference] for b in out_bindings], max_latency_ratio=settings.max_latency_ratio, notes=notes,
    )
    if settings.dynamic:
        report.shapes = _at_other_shapes(reference, candidate, plan, settings, out_bindings)
    if settings.latency is not None:
        _measure_latency(report, reference, candidate, plan, settings, first_ms)
    return report


def _at_other_shapes(reference, candidate, plan: "InputPlan", settings: ValidateSettings, bindings) -> list[dict]:
    """Parity (and, with latency on, a short p50 per side) at each size step of the dynamic dims
    (fwconv.dynamic.shape_sets), fed as an app would (runtimes resize their inputs). A candidate
    that cannot run at a size fails there; a reference that cannot is bad input (exit 2): the
    source itself does not take that size, so no artifact could be judged there."""
    from fwconv.dynamic import shape_sets
    from fwconv.errors import FwconvError, InputError

    results = []
    for shapes in shape_sets(settings.dynamic, {s.name: list(s.shape) for s in plan.specs}):
        specs = [dataclasses.replace(s, shape=shapes[s.name]) for s in plan.specs]
        feed = input_sets(specs, samples=1, seed=settings.seed, ranges=settings.ranges,
                          int_bounds=reference.index_bounds())[0]
        entry: dict[str, Any] = {"inputs": shapes, "passed": True, "failure": None, "worst_scaled_err": 0.0}
        try:
            ref_out = reference.infer(feed)
        except FwconvError as exc:
            raise InputError(f"the source itself does not run at {shapes}: {exc.one_line()}",
                             hint="its graph holds only at other sizes: narrow the --dynamic range") from exc
        try:
            _compare_at(entry, ref_out, candidate.infer(plan.to_candidate(feed)), settings, bindings)
            if settings.latency is not None:
                entry["p50_ms"] = _short_p50(reference, candidate, feed, plan, settings.latency)
        except FwconvError as exc:
            entry.update(passed=False, failure=f"does not run: {exc.one_line()}", worst_scaled_err=None)
        results.append(entry)
    return results


def _compare_at(entry: dict, ref_out, cand_out, settings: ValidateSettings, bindings) -> None:
    for b in bindings:
        tol = settings.per_output.get(b.reference, settings.tolerance)
        result = compare_arrays(b.reference, ref_out[b.reference], b.to_reference(cand_out[b.candidate]), tol)
        entry["worst_scaled_err"] = max(entry["worst_scaled_err"], result.metrics.get("scaled_max_err") or 0.0)
        if not result.passed and entry["passed"]:
            entry.update(passed=False, failure=f"output '{b.reference}': {result.failure}")


def _short_p50(reference, candidate, feed, plan: "InputPlan", latency) -> dict[str, float]:
    """Each side's p50 at this size, on a quarter of the example's timed runs (at least 5): enough
    to see a size the artifact handles badly, not a benchmark."""
    short = dataclasses.replace(latency, warmup_runs=min(latency.warmup_runs, 2), runs=max(5, latency.runs // 4),
                                warmup_seconds=0.0, min_seconds=0.0)
    return {"reference": round(reference.measure_latency(feed, short).p50_ms, 4),
            "candidate": round(candidate.measure_latency(plan.to_candidate(feed), short).p50_ms, 4)}


@dataclasses.dataclass
class InputPlan:
    """The input sets both sides see, and how each reference input feeds the candidate."""

    specs: list[TensorSpec]
    feeds: list[dict[str, np.ndarray]]
    bindings: list[Binding]
    cand_specs: dict[str, TensorSpec | None]
    notes: list[str]

    @classmethod
    def make(cls, reference, candidate, settings, ref_specs, user_inputs, interface, notes) -> "InputPlan":
        if user_inputs is not None:
            # the user's arrays: matching names win, the rest go in the reference's order
            names = reference.input_names()[: len(user_inputs)]
            user_inputs = bind_arrays(user_inputs, [TensorSpec(n, []) for n in names])
            specs = specs_of_arrays(user_inputs)
        else:
            specs = name_positional(ref_specs, reference.input_names()) if ref_specs else reference.input_specs()
        bounds = reference.index_bounds() if user_inputs is None else {}
        feeds = input_sets(specs, user=user_inputs, samples=settings.samples, seed=settings.seed,
                           ranges=settings.ranges, int_bounds=bounds)
        try:
            cand_specs = {s.name: s for s in candidate.input_specs()}
        except InputError:  # e.g. a TorchScript candidate: names known, shapes not recorded
            cand_specs = {n: None for n in candidate.input_names()[: len(specs)]}
        bindings = bind([s.name for s in specs], {s.name: s.shape for s in specs}, list(cand_specs),
                        {n: s.shape for n, s in cand_specs.items() if s is not None}, user_map=settings.user_map,
                        manifest_map=interface.side("inputs") if interface else None, side="input")
        return cls(specs, feeds, bindings, cand_specs, notes)

    def to_candidate(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {b.candidate: _cast_for(b.to_candidate(feed[b.reference]), self.cand_specs.get(b.candidate), self.notes,
                                       b.reference) for b in self.bindings}


def _output_bindings(ref_out, cand_out, settings, interface, notes: list[str]) -> list[Binding]:
    bindings = bind(list(ref_out), {k: list(v.shape) for k, v in ref_out.items()}, list(cand_out),
                    {k: list(v.shape) for k, v in cand_out.items()}, user_map=settings.user_map,
                    manifest_map=interface.side("outputs") if interface else None, side="output")
    extra = set(cand_out) - {b.candidate for b in bindings}
    if extra:
        notes.append(f"candidate outputs not in the reference (not compared): {', '.join(sorted(extra))}")
    return bindings


def _measure_latency(report: ValidationReport, reference, candidate, plan: InputPlan, settings, first_ms) -> None:
    for side, runner, feed in (("reference", reference, plan.feeds[0]),
                               ("candidate", candidate, plan.to_candidate(plan.feeds[0]))):
        stats = runner.measure_latency(feed, settings.latency)
        stats.load_seconds = runner.load_seconds
        stats.first_inference_ms = first_ms.get(side)
        stats.memory_mb, stats.memory_kind = runner.memory_mb()
        stats.threads = settings.threads
        report.latency[side] = stats
    ref_p50 = report.latency["reference"].p50_ms
    report.latency_ratio = report.latency["candidate"].p50_ms / ref_p50 if ref_p50 > 0 else None
