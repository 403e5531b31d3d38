"""Calibration samples for full-integer quantization, from the user's data only.

Accepted: one `.npz` with one array per input (matched by name, else in order) holding N
samples either along a new leading axis (`[N, 1, 3, 64, 64]` for a `[1, 3, 64, 64]` input) or
stacked on the batch axis (`[N, 3, 64, 64]`, what onnx2tf and TF's representative datasets take).
The rank tells them apart, so neither is a guess. Or a folder of per-sample files (`.npz` with one
array per input, or `.npy` for single-input models). There is no fallback to random data: quantization
ranges calibrated on noise are wrong in a way parity on noise would not show.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from fwconv.errors import InputError
from fwconv.specs import TensorSpec, bind_arrays, load_npz


def _by_sample(arr: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """[N, *shape] samples from an array with a sample axis (rank + 1) or stacked on the batch
    axis (same rank, N x batch rows)."""
    shape = list(spec.shape)
    if arr.ndim == len(shape) + 1 and list(arr.shape[1:]) == shape:
        return arr
    batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
    if arr.ndim == len(shape) and batch and list(arr.shape[1:]) == shape[1:] and arr.shape[0] % batch == 0:
        return arr.reshape([arr.shape[0] // batch] + shape)
    dims = ", ".join(map(str, shape))
    raise InputError(f"calibration array '{spec.name}' has shape {list(arr.shape)}; expected [N, {dims}] (a sample "
                     f"axis) or [N*{batch or 'B'}, {', '.join(map(str, shape[1:]))}] (stacked on the batch axis)")


def load_calibration(path: str, specs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    if not os.path.exists(path):
        raise InputError(f"calibration data not found: {path}")
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.npz")) + glob.glob(os.path.join(path, "*.npy")))
        if not files:
            raise InputError(f"no .npz or .npy samples in {path}")
        samples = []
        for f in files:
            if f.endswith(".npy"):
                if len(specs) != 1:
                    raise InputError(f"{f}: .npy samples work for single-input models; use .npz for {len(specs)} inputs")
                samples.append({specs[0].name: np.load(f, allow_pickle=False)})
            else:
                samples.append(bind_arrays(load_npz(f), specs))
    else:
        arrays = bind_arrays(load_npz(path), specs)
        counts = set()
        samples_by_name = {}
        for spec in specs:
            arr = _by_sample(arrays[spec.name], spec)
            counts.add(arr.shape[0])
            samples_by_name[spec.name] = arr
        if len(counts) != 1:
            raise InputError(f"calibration arrays hold different sample counts: {sorted(counts)}")
        samples = [{n: a[i] for n, a in samples_by_name.items()} for i in range(counts.pop())]
    for sample in samples:
        for spec in specs:
            if list(sample[spec.name].shape) != list(spec.shape):
                raise InputError(f"calibration sample for '{spec.name}' has shape {list(sample[spec.name].shape)}, "
                                 f"the model takes {spec.shape}")
    if len(samples) < 8:
        raise InputError(f"only {len(samples)} calibration samples; int8 ranges need at least 8 (100+ is typical)")
    return samples
