"""Conversion edges. Each module defines one or more `Edge`s; the planner finds routes over them.

An edge's `run(artifact, job, out_path)` turns one artifact into another at `out_path`
(inside the job's scratch directory) and returns the new Artifact.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from fwconv.convert.job import Artifact, Job

EDGE_MODULES = ("torch_to_onnx", "onnx_to_tf")


@dataclasses.dataclass(frozen=True)
class Edge:
    src: str  # format family: torch | onnx | tflite | savedmodel | keras
    dst: str
    name: str
    run: Callable[[Artifact, Job, str], Artifact]
    tools: tuple[str, ...] = ()


def all_edges() -> list[Edge]:
    """Import each edge module (cheap: frameworks load inside `run`) and collect its EDGES."""
    edges: list[Edge] = []
    for name in EDGE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        edges.extend(module.EDGES)
    return edges
