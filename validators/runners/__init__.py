"""One runner per runtime; `make_runner` picks it from the model's sniffed format."""

from __future__ import annotations

from fwconv.convert.formats import detect_format
from fwconv.errors import InputError
from fwconv.validators.runners.base import Runner

RUNTIME_OF_FORMAT = {
    "torchscript": "torch", "exported": "torch", "torch-pickle": "torch", "factory": "torch",
    "onnx": "onnxruntime", "tflite": "litert", "savedmodel": "tensorflow", "keras": "keras",
}


def make_runner(model, *, device: str = "cpu", threads: int | None = None, trust_pickle: bool = False,
                fmt: str | None = None) -> Runner:
    """A runner for a path (format sniffed) or an already-loaded TorchSource."""
    from fwconv.convert.torch_source import TorchSource

    if isinstance(model, TorchSource):
        from fwconv.validators.runners.torch_runner import TorchRunner

        return TorchRunner(model, device=device)
    fmt = fmt or detect_format(model)
    runtime = RUNTIME_OF_FORMAT.get(fmt)
    if runtime == "torch":
        from fwconv.validators.runners.torch_runner import TorchRunner

        if threads:
            import torch

            torch.set_num_threads(threads)
        return TorchRunner(model, device=device, trust_pickle=trust_pickle)
    if runtime == "onnxruntime":
        from fwconv.validators.runners.onnxrt_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(model, device=device, threads=threads)
    if runtime == "litert":
        from fwconv.validators.runners.litert_runner import LiteRTRunner

        if device != "cpu":
            raise InputError("LiteRT runs on the CPU here: --device cuda does not apply to a .tflite model")
        return LiteRTRunner(model, threads=threads)
    if runtime == "tensorflow":
        from fwconv.validators.runners.tf_runner import TensorFlowRunner

        return TensorFlowRunner(model, device=device, threads=threads)
    if runtime == "keras":
        from fwconv.validators.runners.keras_runner import KerasRunner

        return KerasRunner(model, trust=trust_pickle)
    raise InputError(f"fwconv has no runner for {fmt} models")
