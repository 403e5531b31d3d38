"""ONNX Runtime runner: CPU, or the CUDA execution provider when asked for and available."""

from __future__ import annotations

import numpy as np

from fwconv.errors import RunnerError, first_line, load_error, require
from fwconv.specs import TensorSpec
from fwconv.validators.runners.base import Intermediate, Runner

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(int16)": "int16"}


def providers_for(device: str, available: list[str]) -> list[str]:
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise RunnerError("--device cuda: onnxruntime has no CUDAExecutionProvider here "
                              "(install onnxruntime-gpu on a machine with CUDA)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    formats = ("onnx",)
    tools = ("onnxruntime", "onnx",)
    devices = ("cpu", "cuda")

    def __init__(self, path: str, *, device: str = "cpu", threads: int | None = None):
        super().__init__()
        self.path = path
        self.device = device
        self.threads = threads
        self.session = None

    def _activate(self) -> None:
        ort = require("onnxruntime", "onnx")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        providers = providers_for(self.device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(self.path, sess_options=opts, providers=providers)
        except Exception as exc:
            raise load_error("onnxruntime", self.path, exc) from exc

    def _deactivate(self) -> None:
        self.session = None

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(i.name, [d if isinstance(d, int) else None for d in i.shape],
                           _ORT_DTYPES.get(i.type, i.type)) for i in self.session.get_inputs()]

    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def index_bounds(self) -> dict[str, int]:
        from fwconv.models.onnx import embedding_bound, load_onnx

        return embedding_bound(load_onnx(self.path, check=False))

    def _infer(self, feed):
        names = self.output_names()
        try:
            outs = self.session.run(names, {k: np.ascontiguousarray(v) for k, v in feed.items()})
        except Exception as exc:
            raise RunnerError(f"onnxruntime failed to run {self.path}: {first_line(exc)}") from exc
        return dict(zip(names, outs))

    def intermediates(self, feed):
        """Every node output made a graph output (as Polygraphy does), run once with graph
        optimisations off, so each value is the node's own and none is fused away."""
        ort = require("onnxruntime", "onnx")
        from fwconv.models.onnx import load_onnx
        from fwconv.models.provenance import module_from_onnx_metadata, user_frame

        model = load_onnx(self.path, check=False)
        graph_outputs = {o.name for o in model.graph.output}
        produced = [(node, name) for node in model.graph.node for name in node.output if name]
        for _, name in produced:
            if name not in graph_outputs:
                model.graph.output.add().name = name  # no type: ORT infers it
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                           providers=providers_for(self.device, ort.get_available_providers()))
            names = [o.name for o in session.get_outputs()]
            values = dict(zip(names, session.run(names, {k: np.ascontiguousarray(v) for k, v in feed.items()})))
        except Exception as exc:
            raise RunnerError(f"onnxruntime failed to run {self.path} with its intermediates exposed: "
                              f"{first_line(exc)}") from exc
        found = []
        for node, name in produced:
            props = {p.key: p.value for p in node.metadata_props}
            found.append(Intermediate(name, node.name or name, node.op_type, [i for i in node.input if i],
                                      np.asarray(values[name]), module_from_onnx_metadata(props),
                                      user_frame(props.get("pkg.torch.onnx.stack_trace"))))
        return found

    def timed_call(self, feed):
        if self.device.startswith("cuda"):
            # Bind inputs on the device once, so the loop times inference, not host->device copies.
            binding = self.session.io_binding()
            import onnxruntime as ort

            for k, v in feed.items():
                binding.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), "cuda", 0))
            for name in self.output_names():
                binding.bind_output(name, "cuda")
            return lambda: self.session.run_with_iobinding(binding)
        names = self.output_names()
        staged = {k: np.ascontiguousarray(v) for k, v in feed.items()}
        return lambda: self.session.run(names, staged)


RUNNERS = [OnnxRuntimeRunner]
