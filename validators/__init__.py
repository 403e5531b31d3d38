"""Validation: run a reference and a candidate model on identical inputs; report parity and latency."""

from __future__ import annotations

import contextlib
from typing import Any

from fwconv.validators.compare import ValidateSettings, ValidationReport, compare_runners

__all__ = ["validate", "ValidateSettings", "ValidationReport"]


def _label(model: Any, runner) -> dict[str, Any]:
    path = getattr(model, "path", model)
    return {"model": str(path), "runtime": runner.name, "device": runner.device}


def validate(reference, candidate, *, settings: ValidateSettings | None = None, ref_specs=None,
             user_inputs=None, isolate: bool = False, timeout: float = 600.0,
             trust_pickle: bool = False) -> ValidationReport:
    """Compare two models (paths, or a loaded TorchSource as reference) on identical inputs.

    With `isolate`, each path-based runner lives in its own process (crash/hang safe, peak memory).
    The candidate's manifest, if it has one, aligns names and layouts.
    """
    from fwconv.manifest import read_manifest
    from fwconv.validators.runners import make_runner
    from fwconv.validators.runners.isolated import IsolatedRunner

    settings = settings or ValidateSettings()

    def runner_for(model):
        common = dict(device=settings.device, threads=settings.threads, trust_pickle=trust_pickle)
        if isolate and isinstance(model, str):
            from fwconv.models.formats import detect_format
            from fwconv.validators.runners import runner_class

            fmt = detect_format(model)
            proxy = IsolatedRunner(timeout=timeout, model=model, fmt=fmt, **common)
            proxy.name = f"{runner_class(fmt).name} (isolated)"
            return proxy
        return make_runner(model, **common)

    manifest = read_manifest(candidate) if isinstance(candidate, str) else None
    ref_runner, cand_runner = runner_for(reference), runner_for(candidate)
    with contextlib.ExitStack() as stack:
        stack.enter_context(ref_runner)
        stack.enter_context(cand_runner)
        return compare_runners(ref_runner, cand_runner, settings=settings, ref_specs=ref_specs,
                               user_inputs=user_inputs, candidate_interface=manifest.interface if manifest else None,
                               labels=(_label(reference, ref_runner), _label(candidate, cand_runner)))
