"""LiteRT runner (`ai_edge_litert` interpreter, XNNPACK, builtin ops only); thread count settable.

When the model has a signature, its input/output names are the signature's keys (what app
code calls); otherwise the raw tensor names are used.
"""

from __future__ import annotations

import collections

import numpy as np

from fwconv.errors import RunnerError, first_line
from fwconv.specs import TensorSpec
from fwconv.validators.runners.base import Intermediate, Runner


class LiteRTRunner(Runner):
    name = "litert"
    formats = ("tflite",)
    tools = ("ai-edge-litert",)

    @classmethod
    def create(cls, model, *, device="cpu", threads=None, trust_pickle=False):
        return cls(model, threads=threads)

    def __init__(self, path: str, *, threads: int | None = None):
        super().__init__()
        self.path = path
        self.threads = threads
        self.interpreter = None
        self._sig = None

    def _activate(self) -> None:
        from fwconv.models.tflite import open_interpreter, signature_of

        # Signature indices let us use plain set_tensor/invoke/get_tensor (a SignatureRunner
        # holds views that block invoke()).
        self.interpreter = open_interpreter(self.path, self.threads)
        self._sig = signature_of(self.interpreter)  # the only one; several: raw tensor names

    def _deactivate(self) -> None:
        self._sig = None
        self.interpreter = None

    def _details(self, side: str) -> list[tuple[str, dict]]:
        from fwconv.models.tflite import io_details

        return io_details(self.interpreter, self._sig, side)

    def tensor_specs(self, side: str) -> list[TensorSpec]:
        """The artifact's real I/O tensors: dtype as stored, with scale/zero-point if quantized."""
        from fwconv.models.tflite import tensor_specs

        return tensor_specs(self.interpreter, self._sig, side)

    def input_specs(self) -> list[TensorSpec]:
        """The logical interface: a quantized (int8/uint8) input takes float values, which this
        runner quantizes with the tensor's own scale/zero-point, as app code would."""
        specs = self.tensor_specs("input")
        for spec in specs:
            if spec.quantization:
                spec.dtype = "float32"
        return specs

    def output_specs(self) -> list[TensorSpec]:
        return self.tensor_specs("output")

    def output_names(self) -> list[str]:
        return [name for name, _ in self._details("output")]

    def _infer(self, feed):
        try:
            self.timed_call(feed)()
        except RunnerError:
            raise
        except Exception as exc:
            raise RunnerError(f"LiteRT failed to run {self.path}: {first_line(exc)}") from exc
        return {name: _dequantize(np.array(self.interpreter.get_tensor(d["index"])), d)
                for name, d in self._details("output")}

    def intermediates(self, feed):
        """A second interpreter that keeps every tensor, fed the way `infer` feeds; each op's
        outputs are read back (dequantized) in execution order. It runs LiteRT's builtin
        kernels, not XNNPACK (which would fuse ops away), as TF's quantization debugger does."""
        from fwconv.models.tflite import open_interpreter

        main, self.interpreter = self.interpreter, open_interpreter(self.path, self.threads, keep_intermediates=True)
        try:
            self._infer(feed)
            interp = self.interpreter
            tensors = {d["index"]: d for d in interp.get_tensor_details()}
            counts = collections.Counter(d["name"] for d in tensors.values())
            key = lambda i: tensors[i]["name"] if counts[tensors[i]["name"]] == 1 else f"{tensors[i]['name']}@{i}"
            found = []
            for op in interp._get_ops_details():
                if op["op_name"] == "DELEGATE":
                    continue
                inputs = [key(i) for i in op["inputs"] if i >= 0 and i in tensors]
                for index in op["outputs"]:
                    d = tensors[index]
                    found.append(Intermediate(key(index), f"{op['op_name']}#{op['index']}", op["op_name"], inputs,
                                              _dequantize(np.array(interp.get_tensor(index)), d)))
            return found
        finally:
            self.interpreter = main

    def _fit_sizes(self, feed) -> None:
        """Resize inputs whose size differs from the tensor's (a dynamic dim), as an app calls
        resize_tensor_input before allocate_tensors."""
        resized = False
        for name, d in self._details("input"):
            shape = list(np.shape(feed[name]))
            if shape != [int(x) for x in d["shape"]]:
                self.interpreter.resize_tensor_input(d["index"], shape, strict=True)
                resized = True
        if resized:
            self.interpreter.allocate_tensors()

    def timed_call(self, feed):
        try:
            self._fit_sizes(feed)
        except Exception as exc:  # strict: a fixed dim cannot take another size
            raise RunnerError(f"LiteRT cannot resize the inputs of {self.path} to "
                              f"{[list(np.shape(v)) for v in feed.values()]}: {first_line(exc)}") from exc
        inputs = [(d["index"], _quantize(np.ascontiguousarray(feed[name]), d)) for name, d in self._details("input")]
        interp = self.interpreter

        def call():
            for index, value in inputs:
                interp.set_tensor(index, value)
            interp.invoke()
        return call


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale or not np.issubdtype(dtype, np.integer) or np.issubdtype(x.dtype, np.integer):
        return x
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale or not np.issubdtype(q.dtype, np.integer):
        return q
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


RUNNERS = [LiteRTRunner]
