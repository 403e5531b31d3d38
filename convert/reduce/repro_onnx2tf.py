"""Reproduce an onnx2tf mismatch with onnx2tf alone: no fwconv needed.

Converts `minimal.onnx` (beside this file) with onnx2tf and the settings in SETTINGS, runs the
.tflite in the LiteRT (or TensorFlow Lite) interpreter on `inputs.npz`, compares with
`expected.npz` (ONNX Runtime's outputs) and prints the mismatch. Exit 1 when the outputs differ
(the bug reproduces), 0 when they match. Needs: onnx2tf, its TensorFlow, numpy, and ai-edge-litert
or tensorflow for the interpreter.

    python repro.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

SETTINGS: dict = {}  # onnx2tf.convert keyword arguments (the converter's settings)
TOLERANCE = 1e-4  # error / scale above this is a mismatch (fp32)


def convert(onnx_path: str, out_dir: str, settings: dict) -> str:
    """onnx2tf.convert with `settings`; the float32 .tflite it wrote."""
    import onnx2tf

    import onnx

    inputs = [i.name for i in onnx.load(onnx_path).graph.input]
    onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=out_dir, non_verbose=True,
                    keep_shape_absolutely_input_names=inputs, **settings)
    found = [n for n in os.listdir(out_dir) if n.endswith("_float32.tflite")]
    if not found:
        raise RuntimeError(f"onnx2tf wrote no *_float32.tflite in {out_dir}")
    return os.path.join(out_dir, found[0])


def run_tflite(path: str, inputs: dict) -> list:
    """The model's outputs in the interpreter, in the model's output order; inputs matched by name
    (onnx2tf keeps input_0, input_1...), transposed from NCHW where the model takes NHWC."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite.python.interpreter import Interpreter
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    names = list(inputs)
    for k, detail in enumerate(interpreter.get_input_details()):
        name = next((n for n in names if n in detail["name"]), names[k])
        value = inputs[name]
        if tuple(value.shape) != tuple(detail["shape"]) and value.ndim >= 3:
            value = np.moveaxis(value, 1, -1)  # NCHW -> NHWC, as onnx2tf lays inputs out
        interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def mismatch(expected: list, got: list) -> float:
    """The worst error / scale over the outputs. onnx2tf may hand a 3D+ output back channels-last:
    each output is compared in every layout whose shape fits (as is, or channels moved to axis 1),
    the closer one counting, so a shape like [1, 16, 16, 16] is not misread as a mismatch."""
    worst = 0.0
    for want, have in zip(expected, got):
        have = np.asarray(have)
        layouts = [have] + ([np.moveaxis(have, -1, 1)] if have.ndim >= 3 else [])
        fitting = [h for h in layouts if h.shape == want.shape]
        if not fitting:
            return float("inf")
        scale = max(float(np.abs(want).max()), 1e-12)
        worst = max(worst, min(float(np.abs(want.astype(np.float64) - h).max()) for h in fitting) / scale)
    return worst


def run(onnx_path: str, work: str, settings: dict, inputs: dict) -> list:
    """Convert in `work` and run: the outputs in LiteRT."""
    return run_tflite(convert(onnx_path, os.path.join(work, "out"), settings), inputs)


def reproduce(folder: str, settings: dict, tolerance: float = TOLERANCE) -> tuple[bool, str]:
    """(reproduces, one line) for the bundle in `folder`."""
    inputs = dict(np.load(os.path.join(folder, "inputs.npz")))
    expected_file = np.load(os.path.join(folder, "expected.npz"))
    expected = [expected_file[k] for k in sorted(expected_file.files, key=lambda k: int(k.split("_")[-1]))]
    with tempfile.TemporaryDirectory() as work:
        try:
            got = run(os.path.join(folder, "minimal.onnx"), work, settings, inputs)
        except ImportError:
            raise
        except Exception as exc:  # the converter itself fails on the subgraph: that is the bug
            return True, f"onnx2tf failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    error = mismatch(expected, got)
    verdict = "MISMATCH" if error > tolerance else "match"
    return error > tolerance, f"{verdict}: error/scale {error:.3g} (tolerance {tolerance:g})"


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        reproduces, line = reproduce(here, json.loads(os.environ.get("REPRO_SETTINGS", "null")) or SETTINGS)
    except ImportError as exc:  # not the bug: this environment lacks a package the converter needs
        print(f"cannot run: {exc} (pip install onnx2tf onnx onnxruntime ai-edge-litert numpy)")
        sys.exit(2)
    print(line)
    sys.exit(1 if reproduces else 0)
