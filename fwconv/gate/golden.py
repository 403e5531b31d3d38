"""Golden files: a model's inputs and reference outputs, frozen with the versions that made them.

`fwconv golden save` writes goldens/<model>/{inputs.npz, outputs.npz, golden.json}; the gate
compares the source and every artifact against them, so a framework upgrade that shifts outputs
is caught even when the source model did not change. A golden is itself a runner (GoldenRunner)
so the comparator's alignment, metrics and tolerances apply unchanged.
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from fwconv.errors import InputError
from fwconv.manifest import sha256_of, tool_versions
from fwconv.specs import TensorSpec
from fwconv.validators.runners.base import Runner

FILES = ("inputs.npz", "outputs.npz", "golden.json")


class GoldenRunner(Runner):
    """Answers its stored inputs with its stored outputs; any other feed is an error."""

    name = "golden"

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def _activate(self) -> None:
        missing = [f for f in FILES if not os.path.exists(os.path.join(self.directory, f))]
        if missing:
            raise InputError(f"golden {self.directory} is incomplete (missing {', '.join(missing)})",
                             hint="create it with: fwconv golden save CONFIG")
        with np.load(os.path.join(self.directory, "inputs.npz"), allow_pickle=False) as d:
            self.inputs = {k: d[k] for k in d.files}
        with np.load(os.path.join(self.directory, "outputs.npz"), allow_pickle=False) as d:
            self.outputs = {k: d[k] for k in d.files}

    def input_specs(self):
        return [TensorSpec(k, list(v.shape), v.dtype.name) for k, v in self.inputs.items()]

    def output_names(self):
        return list(self.outputs)

    def _infer(self, feed):
        for k, v in self.inputs.items():
            if k not in feed or feed[k].tobytes() != v.tobytes():
                raise InputError(f"golden {self.directory} only knows its own inputs")
        return dict(self.outputs)


def save_golden(directory: str, source: str, settings: dict, *, update: bool = False) -> dict:
    """Run the source on the model's inputs (its .npz, or seeded synthetic) and freeze the result."""
    from fwconv.convert.pipeline import Source, prepare_source
    from fwconv.gate.config import convert_options
    from fwconv.staging import protected_paths, staged_outputs

    if os.path.exists(os.path.join(directory, "golden.json")) and not update:
        raise InputError(f"golden exists: {directory}", hint="refresh it deliberately with: fwconv golden update")
    options = convert_options(settings)
    finals = [os.path.join(directory, f) for f in FILES]
    protected = protected_paths(source, options.inputs, options.calibration)
    with staged_outputs(finals, force=update, protected=protected) as temps:  # checked before the model runs
        ref = prepare_source(Source.sniff(source), options)
        ref.close()
        np.savez(temps[finals[0]], **ref.sample)
        np.savez(temps[finals[1]], **ref.outputs)
        _write_info(temps, finals, source)
    with open(finals[2]) as f:
        return json.load(f)


def _write_info(temps: dict[str, str], finals: list[str], source: str) -> None:
    from fwconv.models.formats import model_file

    info = {
        "schema": "fwconv.golden", "schema_version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {"path": source, "sha256": sha256_of(model_file(source)) if model_file(source) else None},
        "device": "cpu", "machine": platform.machine(), "python": platform.python_version(),
        "versions": tool_versions("torch", "onnx", "onnxruntime", "tensorflow", "onnx2tf", "ai-edge-litert", "litert-torch"),
        "files": {os.path.basename(final): sha256_of(temps[final]) for final in finals[:2]},
    }
    with open(temps[finals[2]], "w") as f:
        json.dump(info, f, indent=2)


def compare_to_golden(directory: str, model, settings) -> object:
    """A ValidationReport of `model` (artifact path or source) against the golden's outputs."""
    from fwconv.validators.compare import compare_runners
    from fwconv.validators.runners import make_runner

    golden = GoldenRunner(directory).activate()
    candidate = make_runner(model, threads=settings.threads).activate()
    try:
        return compare_runners(golden, candidate, settings=settings, user_inputs=dict(golden.inputs),
                               candidate_interface=_interface_of(model),
                               labels=({"model": directory, "runtime": "golden", "device": "cpu"},
                                       {"model": model, "runtime": candidate.name, "device": candidate.device}))
    finally:
        candidate.deactivate()


def _interface_of(model: str):
    from fwconv.manifest import read_manifest

    manifest = read_manifest(model) if os.path.exists(model) else None
    return manifest.interface if manifest else None
