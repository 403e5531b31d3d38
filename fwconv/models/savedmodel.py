"""TensorFlow SavedModel directories: loading (a corrupt one is exit 2) and reading signatures."""

from __future__ import annotations

from typing import Any

from fwconv.errors import load_error, require
from fwconv.quiet import captured_output
from fwconv.specs import TensorSpec, normalize_dtype


def load_savedmodel(path: str, device: str = "/CPU:0"):
    tf = require("tensorflow", "tf")
    try:
        with tf.device(device), captured_output():
            return tf.saved_model.load(path)
    except Exception as exc:
        raise load_error("TensorFlow", path, exc) from exc


def signature_specs(fn) -> dict[str, list[TensorSpec]]:
    """A concrete signature function's inputs (keyword specs) and outputs, as TensorSpecs."""
    _, kwargs = fn.structured_input_signature
    return {"inputs": [TensorSpec(n, spec.shape.as_list(), normalize_dtype(spec.dtype.name)) for n, spec in kwargs.items()],
            "outputs": [TensorSpec(n, t.shape.as_list(), normalize_dtype(t.dtype.name))
                        for n, t in fn.structured_outputs.items()]}


def read_signatures(path: str) -> dict[str, Any]:
    """Every signature's I/O; `inputs`/`outputs` are serving_default's (or the first's)."""
    model = load_savedmodel(path)
    sigs = {key: signature_specs(fn) for key, fn in model.signatures.items()}
    default = sigs.get("serving_default") or next(iter(sigs.values()), {"inputs": [], "outputs": []})
    return {"signatures": list(sigs), "inputs": default["inputs"], "outputs": default["outputs"]}
