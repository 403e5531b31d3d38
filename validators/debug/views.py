"""How a candidate tensor can be the reference's tensor: the same array, a layout transpose
(NCHW <-> NHWC, as converters to TFLite/TF do), or the same values with unit dims dropped
(a pooled [1,C,1,1] that a converter keeps as [1,C]). Also a cheap fingerprint, so the
debugger compares full tensors only where the values can possibly agree."""

from __future__ import annotations

import dataclasses

import numpy as np

# layout transposes converters apply, by rank: candidate = reference.transpose(perm)
LAYOUT_PERMS = {3: [(0, 2, 1)], 4: [(0, 2, 3, 1)], 5: [(0, 2, 3, 4, 1)]}


@dataclasses.dataclass(frozen=True)
class View:
    """Turns a candidate array into the reference's layout."""

    perm: tuple[int, ...] | None = None  # candidate = reference.transpose(perm)
    reshape: tuple[int, ...] | None = None  # then reshaped to the reference's shape

    def to_reference(self, cand: np.ndarray, ref_shape: tuple[int, ...]) -> np.ndarray:
        if self.perm:
            return np.ascontiguousarray(cand.transpose(np.argsort(self.perm)))
        if self.reshape:
            return cand.reshape(ref_shape)
        return cand

    def to_candidate(self, ref: np.ndarray, cand_shape: tuple[int, ...]) -> np.ndarray:
        """The inverse: a reference array in the candidate's layout (isolation mode feeds it)."""
        if self.perm:
            return np.ascontiguousarray(ref.transpose(self.perm))
        return ref.reshape(cand_shape) if self.reshape else ref

    @property
    def label(self) -> str:
        return f"transpose {list(self.perm)}" if self.perm else ("unit dims dropped" if self.reshape else "")


def views(ref_shape: tuple[int, ...], cand_shape: tuple[int, ...]) -> list[View]:
    """Every way the candidate's shape can hold the reference's tensor (most direct first)."""
    found = []
    if tuple(ref_shape) == tuple(cand_shape):
        found.append(View())
    for perm in LAYOUT_PERMS.get(len(ref_shape), []):
        if tuple(ref_shape[i] for i in perm) == tuple(cand_shape):  # also when C == H == W: values decide
            found.append(View(perm=perm))
    squeeze = lambda s: tuple(d for d in s if d != 1)
    if not found and int(np.prod(ref_shape)) == int(np.prod(cand_shape)) and squeeze(ref_shape) == squeeze(cand_shape):
        found.append(View(reshape=tuple(ref_shape)))
    return found


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """Order-free summaries: a transpose or reshape leaves them unchanged."""

    size: int
    dims: tuple[int, ...]  # sorted non-unit dims
    total: float
    magnitude: float
    peak: float

    @classmethod
    def of(cls, arr: np.ndarray) -> "Fingerprint":
        a = np.asarray(arr, dtype=np.float64)
        finite = a[np.isfinite(a)] if a.size else a
        return cls(int(a.size), tuple(sorted(d for d in a.shape if d != 1)), float(finite.sum()),
                   float(np.abs(finite).sum()), float(np.abs(finite).max()) if finite.size else 0.0)

    def may_match(self, other: "Fingerprint", loose: float) -> bool:
        if self.size != other.size or self.dims != other.dims:
            return False
        slack = loose * max(self.peak, other.peak, 1e-12)
        return (abs(self.peak - other.peak) <= slack
                and abs(self.magnitude - other.magnitude) <= slack * self.size
                and abs(self.total - other.total) <= slack * self.size)


def scaled_error(ref: np.ndarray, cand: np.ndarray) -> float:
    """max |cand - ref| / max |ref| (the validator's scaled_max_err), NaN-safe."""
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cand, dtype=np.float64)
    if r.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(c - r)
    diff[np.isnan(r) & np.isnan(c)] = 0.0
    diff[np.isnan(diff)] = np.inf
    scale = float(np.max(np.abs(r[np.isfinite(r)]))) if np.isfinite(r).any() else 1.0
    return float(diff.max()) / (scale if scale > 0 else 1.0)


def best_view(ref: np.ndarray, cand: np.ndarray) -> tuple[View, float] | None:
    """The view under which the candidate is closest to the reference, and that error."""
    options = [(v, scaled_error(ref, v.to_reference(cand, ref.shape))) for v in views(ref.shape, cand.shape)]
    return min(options, key=lambda o: o[1]) if options else None
