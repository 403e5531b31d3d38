"""TensorFlow SavedModel runner: calls a signature (serving_default unless named); CPU or GPU."""

from __future__ import annotations

import numpy as np

from fwconv.errors import RunnerError, first_line, require
from fwconv.specs import TensorSpec, normalize_dtype
from fwconv.validators.runners.base import Runner


class TensorFlowRunner(Runner):
    name = "tensorflow"
    formats = ("savedmodel",)
    devices = ("cpu", "cuda")

    signature = "serving_default"  # what converters and apps call

    def __init__(self, path: str, *, device: str = "cpu",
                 threads: int | None = None):
        super().__init__()
        self.path = path
        self.device = device
        self.threads = threads
        self._fn = None
        self._tf = None

    def _device_name(self) -> str:
        return "/GPU:0" if self.device.startswith("cuda") else "/CPU:0"

    def _activate(self) -> None:
        from fwconv.quiet import captured_output

        tf = require("tensorflow", "tf")
        self._tf = tf
        with captured_output():  # the device probe logs a CUDA init failure on CPU-only machines
            gpus = tf.config.list_physical_devices("GPU")
        if self.device.startswith("cuda") and not gpus:
            raise RunnerError("--device cuda: TensorFlow sees no GPU on this machine")
        if self.threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.threads)
            except RuntimeError:
                pass  # already initialized in this process
        from fwconv.models.savedmodel import load_savedmodel

        self._model = load_savedmodel(self.path, self._device_name())
        if self.signature not in self._model.signatures:
            raise RunnerError(f"{self.path} has no signature '{self.signature}' "
                              f"(has: {', '.join(self._model.signatures)})")
        self._fn = self._model.signatures[self.signature]

    def _deactivate(self) -> None:
        self._fn = None
        self._model = None

    def input_specs(self) -> list[TensorSpec]:
        _, kwargs = self._fn.structured_input_signature
        return [TensorSpec(name, [d for d in spec.shape.as_list()], normalize_dtype(spec.dtype.name))
                for name, spec in kwargs.items()]

    def output_names(self) -> list[str]:
        return list(self._fn.structured_outputs)

    def _stage(self, feed):
        tf = self._tf
        with tf.device(self._device_name()):
            return {k: tf.constant(np.ascontiguousarray(v)) for k, v in feed.items()}

    def _infer(self, feed):
        try:
            with self._tf.device(self._device_name()):
                out = self._fn(**self._stage(feed))
        except Exception as exc:
            raise RunnerError(f"TensorFlow failed to run {self.path}: {first_line(exc)}") from exc
        return {k: v.numpy() for k, v in out.items()}

    def timed_call(self, feed):
        staged = self._stage(feed)
        tf = self._tf

        def call():
            with tf.device(self._device_name()):
                out = self._fn(**staged)
            # .numpy() waits for the result: on GPU this is the synchronization point
            for v in out.values():
                v.numpy()
        return call


RUNNERS = [TensorFlowRunner]
