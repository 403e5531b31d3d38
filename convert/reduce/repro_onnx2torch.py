"""Reproduce an onnx2torch mismatch with onnx2torch alone: no fwconv needed.

Converts `minimal.onnx` (beside this file) with `onnx2torch.convert`, runs the module in PyTorch
on `inputs.npz`, compares with `expected.npz` (ONNX Runtime's outputs) and prints the mismatch.
Exit 1 when the outputs differ (the bug reproduces), 0 when they match. Needs: onnx2torch, torch,
onnx, numpy.

    python repro.py
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SETTINGS: dict = {}  # onnx2torch.convert keyword arguments (the converter's settings)
TOLERANCE = 1e-4  # error / scale above this is a mismatch (fp32)


def run(onnx_path: str, work: str, settings: dict, inputs: dict) -> list:
    """onnx2torch's module for the graph, called on `inputs` in the graph's input order."""
    import onnx
    import onnx2torch
    import torch

    model = onnx.load(onnx_path)
    module = onnx2torch.convert(model, **settings).eval()
    args = [torch.from_numpy(np.ascontiguousarray(inputs[i.name])) for i in model.graph.input if i.name in inputs]
    with torch.no_grad():
        out = module(*args)
    return [np.asarray(t.detach().numpy()) for t in (out if isinstance(out, (tuple, list)) else [out])]


def mismatch(expected: list, got: list) -> float:
    """The worst error / scale over the outputs (shapes must agree)."""
    worst = 0.0
    for want, have in zip(expected, got):
        if np.shape(have) != want.shape:
            return float("inf")
        scale = max(float(np.abs(want).max()), 1e-12)
        worst = max(worst, float(np.abs(want.astype(np.float64) - have).max()) / scale)
    return worst


def reproduce(folder: str, settings: dict, tolerance: float = TOLERANCE) -> tuple[bool, str]:
    """(reproduces, one line) for the bundle in `folder`."""
    inputs = dict(np.load(os.path.join(folder, "inputs.npz")))
    expected_file = np.load(os.path.join(folder, "expected.npz"))
    expected = [expected_file[k] for k in sorted(expected_file.files, key=lambda k: int(k.split("_")[-1]))]
    try:
        got = run(os.path.join(folder, "minimal.onnx"), folder, settings, inputs)
    except ImportError:
        raise
    except Exception as exc:  # the converter itself fails on the subgraph: that is the bug
        return True, f"onnx2torch failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    error = mismatch(expected, got)
    verdict = "MISMATCH" if error > tolerance else "match"
    return error > tolerance, f"{verdict}: error/scale {error:.3g} (tolerance {tolerance:g})"


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        reproduces, line = reproduce(here, json.loads(os.environ.get("REPRO_SETTINGS", "null")) or SETTINGS)
    except ImportError as exc:  # not the bug: this environment lacks a package the converter needs
        print(f"cannot run: {exc} (pip install onnx2torch torch torchvision onnx numpy)")
        sys.exit(2)
    print(line)
    sys.exit(1 if reproduces else 0)
