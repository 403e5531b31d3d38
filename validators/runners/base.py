"""The runner interface every runtime implements (after Polygraphy's runners).

A runner is a context manager: `activate()` loads the model (timed as the cold-start load),
`infer(feed)` runs one inference on named numpy arrays and returns named numpy arrays,
recording its own wall time, and `deactivate()` frees the runtime.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from fwconv.errors import RunnerError
from fwconv.specs import TensorSpec


@dataclasses.dataclass
class Intermediate:
    """One op's output tensor, captured by `Runner.intermediates` in execution order. `inputs`
    names the tensors the op read, so the debugger can walk the graph; `module`/`source` are
    the PyTorch module path and source line where the exporter recorded them."""

    tensor: str
    op: str
    op_type: str
    inputs: list[str]
    value: np.ndarray
    module: str | None = None
    source: str | None = None

    def describe(self) -> dict:
        return {"tensor": self.tensor, "op": self.op, "op_type": self.op_type,
                "module": self.module, "source": self.source}


class Runner:
    name = "runner"
    formats: tuple[str, ...] = ()  # the model formats this runtime runs (see fwconv.models.formats)
    devices: tuple[str, ...] = ("cpu",)
    tools: tuple[str, ...] = ()  # the distributions it runs on: their versions decide its results (gate cache)

    @classmethod
    def create(cls, model, *, device: str = "cpu", threads: int | None = None, trust_pickle: bool = False) -> "Runner":
        """Build the runner from make_runner's common arguments (each runner takes what applies)."""
        return cls(model, device=device, threads=threads)
    device = "cpu"

    def __init__(self) -> None:
        self.load_seconds: float | None = None
        self.last_inference_seconds: float | None = None
        self._active = False

    # -- lifecycle -------------------------------------------------------------------------
    def activate(self) -> "Runner":
        if not self._active:
            start = time.perf_counter()
            self._activate()
            self.load_seconds = time.perf_counter() - start
            self._active = True
        return self

    def deactivate(self) -> None:
        if self._active:
            self._deactivate()
            self._active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # -- inference -------------------------------------------------------------------------
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.require_active()
        start = time.perf_counter()
        out = self._infer(feed)
        self.last_inference_seconds = time.perf_counter() - start
        return out

    def require_active(self) -> None:
        """Inference on a runner that was never activated (or already deactivated) is a bug in
        the caller: one clear error, not a runtime's crash on a freed model."""
        if not self._active:
            raise RunnerError(f"the {self.name} runner is not active (activate() it, or use it as a context manager)")

    def timed_call(self, feed: dict[str, np.ndarray]):
        """A zero-argument callable that runs one inference on pre-staged inputs, for the latency
        loop: staging (numpy -> runtime tensors) is done once, outside the timed region."""
        self.require_active()
        return lambda: self._infer(feed)

    def synchronize(self) -> None:
        """Wait for queued device work (GPU runners override)."""

    def measure_latency(self, feed: dict[str, np.ndarray], settings):
        from fwconv.validators.latency import measure

        syncs = type(self).synchronize is not Runner.synchronize  # only GPU runners need it
        return measure(self.timed_call(feed), settings, self.synchronize if syncs else None)

    def memory_mb(self) -> tuple[float | None, str]:
        """In-process runners share the process: only isolated runners have a peak of their own."""
        return None, "not measured in-process (use --isolate)"

    def index_bounds(self) -> dict[str, int]:
        """Upper bounds for integer inputs that index a table (token ids < vocabulary size)."""
        return {}

    def intermediates(self, feed: dict[str, np.ndarray]) -> list[Intermediate]:
        """Run once with every intermediate tensor exposed (for `fwconv debug`), in execution
        order. Graph inputs are not listed; the model's outputs are."""
        raise RunnerError(f"{self.name} cannot expose intermediate tensors")

    # -- introspection ---------------------------------------------------------------------
    def input_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def input_names(self) -> list[str]:
        return [s.name for s in self.input_specs()]

    def returns_dict(self) -> bool:
        """Whether the model's own call returns its outputs by name (a Keras model built with a
        dict of outputs). Converted PyTorch modules keep that structure; others give a tensor
        or a tuple, as PyTorch users expect."""
        return False

    def output_names(self) -> list[str]:
        raise NotImplementedError

    # -- for subclasses --------------------------------------------------------------------
    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        pass

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError
