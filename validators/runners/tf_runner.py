"""TensorFlow SavedModel runner: calls a signature (serving_default unless named); CPU or GPU."""

from __future__ import annotations

import numpy as np

from fwconv.errors import RunnerError, first_line, require
from fwconv.specs import TensorSpec, normalize_dtype
from fwconv.validators.runners.base import Intermediate, Runner


class TensorFlowRunner(Runner):
    name = "tensorflow"
    formats = ("savedmodel",)
    tools = ("tensorflow",)
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

    def intermediates(self, feed):
        """The signature frozen (variables to constants), then pruned to fetch every op's outputs
        in graph order: TF's way to expose what a function keeps internal."""
        tf = self._tf
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        frozen = convert_variables_to_constants_v2(self._fn)
        graph_def = frozen.graph.as_graph_def()
        skip = {"Placeholder", "Const", "NoOp", "Identity", "IdentityN"}
        ops = [op for op in frozen.graph.get_operations() if op.type not in skip and op.outputs]
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        by_name = wrapped.graph.get_tensor_by_name
        placeholders = [t.name for t in frozen.inputs]
        tensors = [t.name for op in ops for t in op.outputs if t.dtype.is_floating or t.dtype.is_integer]
        pruned = wrapped.prune(feeds=[by_name(n) for n in placeholders], fetches=[by_name(n) for n in tensors])
        args = [tf.constant(np.ascontiguousarray(feed[_feed_key(n, feed)])) for n in placeholders]
        try:
            values = pruned(*args)
        except Exception as exc:
            raise RunnerError(f"TensorFlow failed to run {self.path} with its intermediates exposed: "
                              f"{first_line(exc)}") from exc
        ops_of = {t.name: op for op in ops for t in op.outputs}
        return [Intermediate(name, ops_of[name].name, ops_of[name].type, [i.name for i in ops_of[name].inputs],
                             np.asarray(v)) for name, v in zip(tensors, values)]

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


def _feed_key(placeholder: str, feed: dict) -> str:
    """A frozen signature's placeholder ('x:0') back to the signature's input name ('x')."""
    base = placeholder.split(":")[0]
    if base in feed:
        return base
    matches = [k for k in feed if base.endswith(k) or k.endswith(base)]
    if len(matches) != 1:
        raise RunnerError(f"cannot tell which input feeds placeholder '{placeholder}' (inputs: {', '.join(feed)})")
    return matches[0]


RUNNERS = [TensorFlowRunner]
