"""One runner per runtime. Each runner class declares the formats it runs and the devices it
supports; `make_runner` picks the class for a model's sniffed format (or a named runtime).

Adding a runtime is one module with a `RUNNERS` list, named in RUNNER_MODULES (a second runtime
for one format, e.g. ONNX Runtime's CUDA provider or ExecuTorch, is chosen with `runtime=`).
Runner modules import their framework lazily, so listing them costs nothing.
"""

from __future__ import annotations

import importlib

from fwconv.errors import InputError
from fwconv.validators.runners.base import Runner

RUNNER_MODULES = ("torch_runner", "onnxrt_runner", "litert_runner", "tf_runner", "keras_runner", "executorch_runner")


def runner_classes() -> list[type[Runner]]:
    classes: list[type[Runner]] = []
    for name in RUNNER_MODULES:
        classes.extend(importlib.import_module(f"{__name__}.{name}").RUNNERS)
    return classes


def runner_class(fmt: str, runtime: str | None = None) -> type[Runner]:
    """The first runner that runs `fmt` (and is called `runtime`, when given)."""
    for cls in runner_classes():
        if fmt in cls.formats and runtime in (None, cls.name):
            return cls
    wanted = f" with runtime {runtime}" if runtime else ""
    raise InputError(f"fwconv has no runner for {fmt} models{wanted}")


def make_runner(model, *, device: str = "cpu", threads: int | None = None, trust_pickle: bool = False,
                fmt: str | None = None, runtime: str | None = None) -> Runner:
    """A runner for a path (format sniffed unless given) or an already-loaded TorchSource."""
    from fwconv.models.torch_source import TorchSource

    if isinstance(model, TorchSource):
        fmt = "factory" if model.kind == "module" else model.kind
    else:
        from fwconv.models.formats import detect_format

        fmt = fmt or detect_format(model)
    cls = runner_class(fmt, runtime)
    if not any(device.startswith(d) for d in cls.devices):
        raise InputError(f"{cls.name} runs on {' or '.join(cls.devices)} here: --device {device} does not apply "
                         f"to a {fmt} model")
    return cls.create(model, device=device, threads=threads, trust_pickle=trust_pickle)
