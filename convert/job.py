"""What flows through a conversion: the user's options, the artifacts, and the stage records."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator

import numpy as np

from fwconv import progress
from fwconv.convert.options import ConvertOptions
from fwconv.interface import Interface
from fwconv.specs import TensorSpec


@dataclasses.dataclass
class Artifact:
    """A model on disk (or a loaded source) with the interface fwconv knows it has."""

    path: str
    format: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tools: dict[str, str] = dataclasses.field(default_factory=dict)
    ops: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    interface: Interface | None = None  # which route-source tensor each of its tensors is


@dataclasses.dataclass
class StageRecord:
    stage: str
    status: str = "ok"
    seconds: float = 0.0
    detail: str = ""


@dataclasses.dataclass
class Job:
    """State shared by the edges of one conversion."""

    options: ConvertOptions
    workdir: str
    sample: dict[str, np.ndarray]  # example inputs, keyed by the source's input names
    reference_outputs: dict[str, np.ndarray] | None = None
    torch_source: Any = None  # the loaded TorchSource for torch-rooted routes
    max_opset: int | None = None  # set by the pipeline from later edges' limits (e.g. onnx2torch)
    source_returns_dict: bool = False  # the source model's call returns a dict of named outputs
    # A repair's edge settings (convert/repair.py), by settings class; and the settings each edge ran with.
    overrides: dict[type, Any] = dataclasses.field(default_factory=dict)
    used: dict[type, Any] = dataclasses.field(default_factory=dict)
    # {input: {dim: fwconv.dynamic.DynamicDim}}: the dims that stay variable (--dynamic, or the source's own)
    dynamic: dict[str, dict[int, Any]] = dataclasses.field(default_factory=dict)
    stages: list[StageRecord] = dataclasses.field(default_factory=list)
    # Set by the pipeline when validation is on: the validator's verdict on an intermediate
    # candidate Artifact, as {"passed", "cosine", "snr_db", "failure", "p50_ms"}. Selective
    # quantization (convert/quant_repair.py) searches with it; convert/ never imports validators.
    check: Callable[[Artifact], dict] | None = None

    def settings(self, cls):
        """An edge's settings (a frozen dataclass with `from_options`): a repair's, else its
        defaults for these options. Recorded as used; an edge that narrows them (the exporter that
        ran) records the narrower ones."""
        value = self.overrides.get(cls) or cls.from_options(self.options)
        self.used[cls] = value
        return value

    def opset(self, tool_max: int | None = None) -> int:
        """The opset an ONNX-producing edge should emit: the user's, within what this tool and
        every later edge of the route accept."""
        return min(v for v in (self.options.opset, tool_max, self.max_opset) if v is not None)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        """Time a stage and record ok/failed (and show it as a progress step), within the stage
        time limit (fwconv.timeouts); the exception still propagates."""
        from fwconv import timeouts

        record = StageRecord(name)
        self.stages.append(record)
        start = time.perf_counter()
        try:
            with progress.step(name), timeouts.limited(name, self.options.stage_timeout):
                yield record
        except BaseException as exc:
            record.status = "failed"
            record.detail = record.detail or type(exc).__name__
            raise
        finally:
            record.seconds = round(time.perf_counter() - start, 4)
