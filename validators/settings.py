"""Validation settings, built and checked in one place for the CLI, the gate, the Python API and
the pytest plugin: tolerances (global and per output, never negative), the candidate precision
they default from, sample count, input ranges, tensor pairings, latency."""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from fwconv.errors import InputError
from fwconv.validators.compare import ValidateSettings
from fwconv.validators.latency import LatencySettings
from fwconv.validators.metrics import DEFAULT_TOLERANCES, Tolerance


def _number(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, not {value!r}") from None
    if not math.isfinite(number):  # nan compares false with everything: it would pass any error
        raise InputError(f"{what} must be a finite number, not {value!r}")
    if number < 0:
        raise InputError(f"{what} must not be negative")
    return number


def _per_output(per_output: Mapping | Iterable[str], precision: str, rtol: float | None) -> dict[str, Tolerance]:
    """{name: atol or (atol, rtol)} from a config, or 'NAME=ATOL[,RTOL]' strings from the CLI."""
    if isinstance(per_output, Mapping):
        items = list(per_output.items())
    else:
        items = []
        for text in per_output:
            name, sep, values = text.partition("=")
            if not sep or not name or not values or len(values.split(",")) > 2:
                raise InputError(f"bad --tolerance '{text}': expected OUTPUT=ATOL or OUTPUT=ATOL,RTOL")
            items.append((name, values.split(",")))
    out = {}
    for name, value in items:
        parts = value if isinstance(value, (list, tuple)) else [value]
        numbers = [_number(v, f"tolerance for '{name}'") for v in parts]
        out[name] = Tolerance(precision, atol=numbers[0], rtol=numbers[1] if len(numbers) == 2 else (rtol or 0.0))
    return out


def build_settings(*, precision: str = "fp32", atol=None, rtol=None, per_output: Mapping | Iterable[str] = (),
                   samples: int = 1, seed: int = 0, input_ranges: Iterable[str] = (), maps: Iterable[str] = (),
                   threads: int | None = None, device: str = "cpu", latency: LatencySettings | None = LatencySettings(),
                   max_latency_ratio=None, dynamic=()) -> ValidateSettings:
    """The one constructor of ValidateSettings from user-facing values (every check lives here)."""
    from fwconv.validators.align import parse_map
    from fwconv.validators.inputs import parse_ranges

    if precision not in DEFAULT_TOLERANCES:
        raise InputError(f"unknown precision '{precision}'", hint=f"choose one of: {', '.join(DEFAULT_TOLERANCES)}")
    atol = None if atol is None else _number(atol, "--atol")
    rtol = None if rtol is None else _number(rtol, "--rtol")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise InputError("--samples must be a whole number, at least 1")
    ratio = None if max_latency_ratio is None else _number(max_latency_ratio, "--max-latency-ratio")
    return ValidateSettings(
        device=device, threads=threads, samples=samples, seed=seed, ranges=parse_ranges(tuple(input_ranges)),
        tolerance=Tolerance(precision, atol=atol, rtol=rtol), per_output=_per_output(per_output, precision, rtol),
        latency=latency, max_latency_ratio=ratio, user_map=parse_map(tuple(maps)), dynamic=tuple(dynamic))


def settings_from(options, *, precision: str | None = None, device: str = "cpu",
                  threads: int | None = None) -> ValidateSettings:
    """The validation settings an fwconv.options.Options describes (the same builder for every
    door). `precision`: the candidate's, where the user's --precision does not say; `threads`: a
    default where the options give none (a gate worker's share of the cores)."""
    latency = LatencySettings(options.warmup, options.warmup_seconds, options.runs, options.min_seconds) \
        if options.latency else None
    return build_settings(precision=options.precision or precision or "fp32", atol=options.atol, rtol=options.rtol,
                          per_output=options.tolerance, samples=options.samples, seed=options.seed,
                          input_ranges=options.input_range, maps=options.map, threads=options.threads or threads,
                          device=device, latency=latency, max_latency_ratio=options.max_latency_ratio,
                          dynamic=options.dynamic)
