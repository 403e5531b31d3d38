"""Parity gates as ordinary tests: `assert_parity(reference, candidate, inputs=..., atol=...)`.

    from fwconv.testing import assert_parity
    assert_parity("model.pt2", "model.tflite", inputs="sample.npz", atol=1e-4)

Raises AssertionError with the per-output table and the failing element when the candidate does
not match; returns the ValidationReport when it does.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_parity(reference: Any, candidate: Any, *, inputs: str | dict | None = None, atol: float | None = None,
                  rtol: float | None = None, precision: str = "fp32", samples: int = 1, seed: int = 0,
                  input_shapes: tuple[str, ...] = (), input_dtypes: tuple[str, ...] = (),
                  max_latency_ratio: float | None = None, isolate: bool = False):
    from fwconv.specs import load_npz, specs_from_options
    from fwconv.validators import validate
    from fwconv.validators.latency import LatencySettings
    from fwconv.validators.report import to_text
    from fwconv.validators.settings import build_settings

    user = load_npz(inputs) if isinstance(inputs, str) else ({k: np.asarray(v) for k, v in inputs.items()} if inputs else None)
    settings = build_settings(precision=precision, atol=atol, rtol=rtol, samples=samples, seed=seed,
                              latency=LatencySettings(runs=10) if max_latency_ratio else None,
                              max_latency_ratio=max_latency_ratio)
    report = validate(str(reference), str(candidate), settings=settings, user_inputs=user,
                      ref_specs=specs_from_options(input_shapes, input_dtypes) or None, isolate=isolate)
    if report.status != "pass":
        raise AssertionError(f"{candidate} does not match {reference}:\n" + "\n".join(report.failures())
                             + "\n\n" + to_text(report))
    return report
