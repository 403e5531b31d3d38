"""Identical inputs for both sides of a comparison, from one place.

Either the user's arrays (`--inputs FILE.npz`) or seeded synthetic arrays built from the
model's input specs. Integer inputs (token ids, indices) stay inside a valid range, by default
below the smallest embedding table the model has, so a lookup never goes out of bounds.
"""

from __future__ import annotations

import numpy as np

from fwconv.errors import InputError
from fwconv.specs import DTYPES, TensorSpec

DEFAULT_INT_HIGH = 16


def parse_ranges(texts: tuple[str, ...] | list[str]) -> dict[str | None, tuple[float, float]]:
    """--input-range 'name:low,high' or 'low,high' (all inputs) -> {name|None: (low, high)}."""
    ranges: dict[str | None, tuple[float, float]] = {}
    for text in texts:
        name, _, rest = text.rpartition(":") if ":" in text else (None, None, text)
        try:
            low, high = (float(v) for v in rest.split(","))
        except ValueError as exc:
            raise InputError(f"bad --input-range '{text}': expected low,high or name:low,high") from exc
        if not high > low:
            raise InputError(f"bad --input-range '{text}': high must be greater than low")
        ranges[name or None] = (low, high)
    return ranges


def synthetic_inputs(
    specs: list[TensorSpec],
    *,
    seed: int = 0,
    ranges: dict[str | None, tuple[float, float]] | None = None,
    int_bounds: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Seeded arrays for each spec: the same seed gives the same bytes, on any machine."""
    ranges = ranges or {}
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for spec in specs:
        if not spec.is_static:
            raise InputError(
                f"input '{spec.name}' has a dynamic shape {spec.shape}",
                hint=f"give it with --input-shape {spec.name}:1,... or --inputs FILE.npz",
            )
        dtype = np.dtype(DTYPES.get(spec.dtype, spec.dtype))
        low, high = ranges.get(spec.name) or ranges.get(None) or (None, None)
        shape = tuple(spec.shape)
        if dtype == np.bool_:
            arr = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            lo = int(low) if low is not None else 0
            hi = int(high) if high is not None else (int_bounds or {}).get(spec.name, DEFAULT_INT_HIGH)
            arr = rng.integers(lo, hi, size=shape).astype(dtype)
        elif low is not None:
            arr = rng.uniform(low, high, size=shape).astype(dtype)
        else:
            arr = rng.standard_normal(size=shape).astype(dtype)
        feed[spec.name] = arr
    return feed


def input_sets(
    specs: list[TensorSpec],
    *,
    user: dict[str, np.ndarray] | None = None,
    samples: int = 1,
    seed: int = 0,
    ranges=None,
    int_bounds: dict[str, int] | None = None,
) -> list[dict[str, np.ndarray]]:
    """The feeds to compare on: the user's one set, or `samples` seeded sets (seed, seed+1, ...)."""
    if user is not None:
        return [user]
    return [synthetic_inputs(specs, seed=seed + i, ranges=ranges, int_bounds=int_bounds) for i in range(samples)]
