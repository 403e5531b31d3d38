"""`fwconv debug`: where two models that should compute the same thing part ways.

Both models run once on the same inputs with every intermediate tensor exposed (each runner's
`intermediates`); tensors are paired across the frameworks (fwconv.validators.debug.pairing)
and compared in the reference's graph order. The first divergence is the first paired tensor
out of tolerance: everything it was computed from still agrees, so the op (or the ops fused into
it, listed as its span) is where the conversion went wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from fwconv import progress
from fwconv.validators.compare import ValidateSettings, compare_runners
from fwconv.validators.debug.pairing import Pair, pair_intermediates
from fwconv.validators.debug.report import DebugReport, Divergence, PairResult, preview
from fwconv.validators.debug.views import best_view
from fwconv.validators.metrics import DEFAULT_TOLERANCES, compare_arrays
from fwconv.validators.runners.base import Intermediate, Runner

LOOSE_FACTOR = 100.0  # values this many tolerances apart still identify a tensor (then fail it)


@dataclasses.dataclass
class DebugSettings:
    validate: ValidateSettings = dataclasses.field(default_factory=ValidateSettings)
    isolate: bool = False  # feed each candidate op the reference's inputs (ONNX candidates)


def debug(reference, candidate, *, settings: DebugSettings | None = None, ref_specs=None, user_inputs=None,
          trust_pickle: bool = False, candidate_interface=None, names: tuple[str, str] | None = None) -> DebugReport:
    """Compare two models layer by layer. Each of `reference`/`candidate` is a path, a loaded
    TorchSource, or an active Runner; `names` labels them in the report (a conversion's
    candidate is still a staging file: the report names the output the user asked for)."""
    from fwconv.manifest import read_manifest

    settings = settings or DebugSettings()
    vs = dataclasses.replace(settings.validate, samples=1)
    if candidate_interface is None and isinstance(candidate, str):
        manifest = read_manifest(candidate)
        candidate_interface = manifest.interface if manifest else None
    with contextlib.ExitStack() as stack:
        ref_runner, cand_runner = (_runner(m, vs, trust_pickle, stack) for m in (reference, candidate))
        labels = (_label(reference, ref_runner), _label(candidate, cand_runner))
        for label, name in zip(labels, names or ()):
            label["model"] = name
        with progress.step("debug: outputs and latency"):
            validation = compare_runners(ref_runner, cand_runner, settings=vs, ref_specs=ref_specs,
                                         user_inputs=user_inputs, candidate_interface=candidate_interface, labels=labels)
        feed, cand_feed = _feeds(ref_runner, cand_runner, vs, ref_specs, user_inputs, candidate_interface)
        ref_nodes = _capture(ref_runner, feed, "reference", validation.notes)
        cand_nodes = _capture(cand_runner, cand_feed, "candidate", validation.notes)
        outputs = _output_pairs(ref_runner.infer(feed), cand_runner.infer(cand_feed), validation, ref_nodes, cand_nodes)
        isolated = None
        if settings.isolate:
            from fwconv.validators.debug.isolate import isolate_ops

            isolated = lambda pairs: isolate_ops(cand_runner, ref_nodes, cand_nodes, pairs, cand_feed,
                                                 vs.tolerance)
        with progress.step(f"debug: pairing {len(ref_nodes)} x {len(cand_nodes)} tensors"):
            return _report(ref_nodes, cand_nodes, outputs, validation, vs, isolated)


def _runner(model, settings: ValidateSettings, trust_pickle: bool, stack) -> Runner:
    from fwconv.validators.runners import make_runner

    if isinstance(model, Runner):
        return model.activate()
    runner = make_runner(model, device=settings.device, threads=settings.threads, trust_pickle=trust_pickle)
    return stack.enter_context(runner)


def _capture(runner: Runner, feed, side: str, notes: list[str]) -> list[Intermediate]:
    """The runner's intermediates; a runtime that cannot expose them (TorchScript) leaves the
    outputs' verdict standing, with a note instead of a layerwise answer."""
    from fwconv.errors import RunnerError

    with progress.step(f"debug: intermediates of the {side} ({runner.name})"):
        try:
            return runner.intermediates(feed)
        except RunnerError as exc:
            notes.append(f"no layerwise comparison: the {side}: {exc.one_line()}")
            return []


def _label(model, runner: Runner) -> dict:
    from fwconv.models.formats import detect_format

    path = getattr(model, "path", model)
    fmt = getattr(model, "kind", None) or (detect_format(path) if isinstance(path, str) else None)
    return {"model": str(path), "format": fmt, "runtime": runner.name, "device": runner.device}


def _feeds(ref_runner, cand_runner, settings, ref_specs, user_inputs, interface):
    """The first input set compare_runners used, for both sides (same seed, same plan)."""
    from fwconv.validators.compare import InputPlan

    plan = InputPlan.make(ref_runner, cand_runner, settings, ref_specs, user_inputs, interface, [])
    return plan.feeds[0], plan.to_candidate(plan.feeds[0])


def _producer_of(nodes: list[Intermediate], array: np.ndarray) -> int | None:
    """The last intermediate holding the model's output (the debug run may use other kernels
    than the plain run, e.g. LiteRT without XNNPACK: the closest within 1e-3 wins)."""
    best = None
    for k in range(len(nodes) - 1, -1, -1):
        found = best_view(array, nodes[k].value)
        if found and found[1] <= 1e-3 and (best is None or found[1] < best[1]):
            best = (k, found[1])
    return best[0] if best else None


def _output_pairs(ref_out, cand_out, validation, ref_nodes, cand_nodes) -> dict[int, int]:
    pairs = {}
    for b in validation.output_bindings:
        i = _producer_of(ref_nodes, ref_out[b["reference"]])
        j = _producer_of(cand_nodes, cand_out[b["candidate"]])
        if i is not None and j is not None:
            pairs[i] = j
    return pairs


def _report(ref_nodes, cand_nodes, outputs, validation, settings: ValidateSettings, isolated) -> DebugReport:
    tol = settings.tolerance
    defaults = DEFAULT_TOLERANCES[tol.precision]
    scaled = (defaults["atol_scaled"] or 0.05) + (defaults["rtol"] or 0.0)  # the default rule, as a scaled error
    loose = scaled * LOOSE_FACTOR
    agrees = lambda p: _parity(p, ref_nodes, cand_nodes, tol).passed
    pairs = pair_intermediates(ref_nodes, cand_nodes, agrees=agrees, loose=loose, outputs=outputs)
    results = [_result(k, p, ref_nodes, cand_nodes, tol) for k, p in enumerate(pairs)]
    notes = []
    first = next((r for r in results if not r.within_tolerance), None)
    if isolated is not None:
        by_pair, notes = isolated(pairs)
        for k, metrics in by_pair.items():
            results[k].isolated = metrics
        # the first op wrong by itself, when isolation could run it; else the propagated one
        first = next((r for r in results if r.isolated and not r.isolated["within_tolerance"]), first)
    divergence = None
    if first is not None:
        p = pairs[first.index]
        ref_value, cand_value = ref_nodes[p.ref].value, p.view.to_reference(cand_nodes[p.cand].value, ref_nodes[p.ref].value.shape)
        divergence = Divergence(first.index, _span(ref_nodes, p.ref, {q.ref for q in pairs}),
                                _span(cand_nodes, p.cand, {q.cand for q in pairs}), preview(ref_value, cand_value))
    paired_ref, paired_cand = {p.ref for p in pairs}, {p.cand for p in pairs}
    return DebugReport(
        reference=validation.reference, candidate=validation.candidate,
        tolerance={"precision": tol.precision, "atol": tol.atol, "rtol": tol.rtol, "identify_within": loose,
                   # where the default rule sits on the scaled-error axis (none when --atol/--rtol are absolute)
                   "scaled_max_err": scaled if tol.atol is None and tol.rtol is None and defaults["atol_scaled"] else None},
        mode="isolated" if isolated and any(r.isolated for r in results) else "propagated", pairs=results,
        unpaired={"reference": len(ref_nodes) - len(paired_ref), "candidate": len(cand_nodes) - len(paired_cand)},
        first_divergence=divergence, validation=validation, notes=notes + validation.notes)


def _parity(p: Pair, ref_nodes, cand_nodes, tol):
    r, c = ref_nodes[p.ref], cand_nodes[p.cand]
    return compare_arrays(r.tensor, r.value, p.view.to_reference(c.value, r.value.shape), tol)


def _result(k: int, p: Pair, ref_nodes, cand_nodes, tol) -> PairResult:
    r, c = ref_nodes[p.ref], cand_nodes[p.cand]
    parity = _parity(p, ref_nodes, cand_nodes, tol)
    how = p.how + (f", {p.view.label}" if p.view.label else "")
    return PairResult(k, r.describe(), c.describe(), how, list(p.view.perm) if p.view.perm else None,
                      list(r.value.shape), parity.metrics, parity.passed)


def _span(nodes: list[Intermediate], index: int, paired: set[int]) -> list[str]:
    """Unpaired ops feeding this one, back to the nearest paired tensors: on the reference side,
    what the candidate fused into the op it was paired with; on the candidate side, ops the
    reference does not have (a transpose a converter inserted, say)."""
    producer = {n.tensor: k for k, n in enumerate(nodes)}
    seen, todo = set(), [index]
    while todo:
        k = todo.pop()
        for name in nodes[k].inputs:
            j = producer.get(name)
            if j is not None and j not in paired and j not in seen:
                seen.add(j)
                todo.append(j)
    return [f"{nodes[j].op} ({nodes[j].module or nodes[j].op_type})" for j in sorted(seen)]
