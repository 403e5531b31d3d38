"""ExecuTorch runner: a .pte's `forward` in the ExecuTorch runtime (pybindings: portable kernels
plus the XNNPACK delegate), CPU only.

Names are the source's when fwconv wrote the program (its IO method), else input_0/output_0 by
position. The runtime's log (cpuinfo lines on every load, error reasons) is captured: it shows
only with --debug, and its reasons become the error messages (fwconv.models.executorch).
"""

from __future__ import annotations

import numpy as np

from fwconv.errors import require
from fwconv.specs import TensorSpec
from fwconv.validators.runners.base import Runner


class ExecuTorchRunner(Runner):
    name = "executorch"
    formats = ("pte",)
    tools = ("executorch",)

    @classmethod
    def create(cls, model, *, device="cpu", threads=None, trust_pickle=False):
        return cls(model, threads=threads)

    def __init__(self, path: str, *, threads: int | None = None):
        super().__init__()
        self.path = path
        self.threads = threads
        self._method = None
        self._io: dict | None = None

    def _activate(self) -> None:
        from fwconv.models.executorch import load_method, open_program, read_io

        if self.threads:  # the XNNPACK delegate's thread pool (process-wide)
            portable = require("executorch.extension.pybindings.portable_lib", "executorch")
            portable._unsafe_reset_threadpool(self.threads)
        program = open_program(self.path)
        self._io = read_io(self.path, program)
        self._method = load_method(program, "forward", self.path)

    def _deactivate(self) -> None:
        self._method = None

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(s.name, list(s.shape), s.dtype) for s in self._io["inputs"]]

    def output_specs(self) -> list[TensorSpec]:
        return [TensorSpec(s.name, list(s.shape), s.dtype) for s in self._io["outputs"]]

    def output_names(self) -> list[str]:
        return [s.name for s in self._io["outputs"]]

    def _stage(self, feed: dict[str, np.ndarray]) -> list:
        torch = require("torch", "executorch")
        names = [s.name for s in self._io["inputs"]]
        arrays = [feed[n] for n in names] if all(n in feed for n in names) else list(feed.values())
        return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]

    def _infer(self, feed):
        from fwconv.models.executorch import execute
        from fwconv.models.torch_source import to_numpy

        outputs = execute(self._method, self._stage(feed), self.path)
        return {name: to_numpy(t) if hasattr(t, "detach") else np.asarray(t)
                for name, t in zip(self.output_names(), outputs)}

    def timed_call(self, feed):
        args = self._stage(feed)
        method = self._method
        return lambda: method.execute(args)


RUNNERS = [ExecuTorchRunner]
