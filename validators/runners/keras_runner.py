"""Keras 3 runner for `.keras` files, loaded with safe_mode (no Lambda code unless trusted)."""

from __future__ import annotations

import numpy as np

from fwconv.specs import TensorSpec, normalize_dtype
from fwconv.validators.runners.base import Intermediate, Runner


class KerasRunner(Runner):
    name = "keras"
    formats = ("keras",)
    tools = ("keras", "tensorflow",)

    @classmethod
    def create(cls, model, *, device="cpu", threads=None, trust_pickle=False):
        return cls(model, trust=trust_pickle)

    def __init__(self, path: str, *, trust: bool = False):
        super().__init__()
        self.path, self.trust = path, trust
        self.model = None

    def _activate(self) -> None:
        from fwconv.models.keras import load_keras

        self.model = load_keras(self.path, trust=self.trust)

    def _deactivate(self) -> None:
        self.model = None

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(t.name, list(t.shape), normalize_dtype(t.dtype)) for t in self.model.inputs]

    def returns_dict(self) -> bool:
        return isinstance(self.model.output, dict)

    def output_names(self) -> list[str]:
        return list(self.model.output_names)

    def _infer(self, feed):
        names = [t.name for t in self.model.inputs]
        out = self.model({n: feed[n] for n in names} if len(names) > 1 else feed[names[0]], training=False)
        if isinstance(out, dict):
            return {k: np.asarray(v) for k, v in out.items()}
        out = out if isinstance(out, (list, tuple)) else [out]
        return {n: np.asarray(v) for n, v in zip(self.output_names(), out)}

    def intermediates(self, feed):
        """A functional model's layer outputs, through a model that returns them all."""
        import keras

        layers = [layer for layer in self.model.layers if not isinstance(layer, keras.layers.InputLayer)]
        try:
            outputs = [layer.output for layer in layers]
        except (AttributeError, ValueError) as exc:
            raise RunnerError(f"{self.path}: only functional Keras models expose their layers' outputs") from exc
        probe = keras.Model(self.model.inputs, outputs)
        names = [t.name for t in self.model.inputs]
        values = probe({n: feed[n] for n in names} if len(names) > 1 else feed[names[0]], training=False)
        found = []
        for layer, value in zip(layers, values):
            parents = [n.operation.name for node in layer._inbound_nodes[:1] for n in node.parent_nodes]
            found.append(Intermediate(layer.name, layer.name, type(layer).__name__, parents, np.asarray(value)))
        return found


RUNNERS = [KerasRunner]
