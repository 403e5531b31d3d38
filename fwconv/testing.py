"""Parity gates as ordinary tests: `assert_parity(reference, candidate, inputs=..., atol=...)`.

    from fwconv.testing import assert_parity
    assert_parity("model.pt2", "model.tflite", inputs="sample.npz", atol=1e-4)

Keywords are the input and validation options of fwconv.options, by the same names as
everywhere else (`inputs`, `input_shape`, `atol`, `tolerance`, `samples`, `max_latency_ratio`...);
`inputs` may also be a dict of arrays. Latency is measured only when `max_latency_ratio` asks.
Raises AssertionError with the per-output table and the failing element when the candidate does
not match; returns the ValidationReport when it does.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_parity(reference: Any, candidate: Any, *, isolate: bool = False, **options: Any):
    from fwconv.errors import InputError
    from fwconv.options import PLUGIN, Options, door_of, fields
    from fwconv.specs import load_npz
    from fwconv.validators import validate
    from fwconv.validators.report import to_text
    from fwconv.validators.settings import settings_from

    comparing = {f.name for f in fields(Options) if PLUGIN in door_of(f).doors and door_of(f).group in ("input", "validation")}
    unknown = sorted(set(options) - comparing)
    if unknown:
        raise InputError(f"assert_parity: unknown option(s) {', '.join(unknown)}", hint=f"allowed: {', '.join(sorted(comparing))}")
    arrays = options.pop("inputs", None)
    parsed = Options(**{"latency": options.get("max_latency_ratio") is not None, "runs": 10, **options},
                     inputs=arrays if isinstance(arrays, str) else None)
    user = load_npz(arrays) if isinstance(arrays, str) else ({k: np.asarray(v) for k, v in arrays.items()} if arrays else None)
    report = validate(str(reference), str(candidate), settings=settings_from(parsed), user_inputs=user,
                      ref_specs=parsed.input_specs or None, isolate=isolate)
    if report.status != "pass":
        raise AssertionError(f"{candidate} does not match {reference}:\n" + "\n".join(report.failures())
                             + "\n\n" + to_text(report))
    return report
