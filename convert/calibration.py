"""Calibration samples for full-integer quantization, from the user's data only.

Accepted: one `.npz` whose arrays hold N samples along a leading axis (one array per input,
matched by name, else in order), or a folder of per-sample files (`.npz` with one array per
input, or `.npy` for single-input models). There is no fallback to random data: quantization
ranges calibrated on noise are wrong in a way parity on noise would not show.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from fwconv.errors import InputError
from fwconv.specs import TensorSpec, bind_arrays, load_npz


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
            arr = arrays[spec.name]
            if list(arr.shape) == list(spec.shape):
                arr = arr[None]
            if list(arr.shape[1:]) != list(spec.shape):
                raise InputError(f"calibration array '{spec.name}' has shape {list(arr.shape)}; expected "
                                 f"[N, {', '.join(map(str, spec.shape))}] (N samples of the input)")
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
