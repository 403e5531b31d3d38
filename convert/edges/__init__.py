"""Conversion edges. Each module defines one or more `Edge`s; the planner finds routes over them.

An edge's `run(artifact, job, out_path)` turns one artifact into another at `out_path`
(inside the job's scratch directory) and returns the new Artifact.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from fwconv.convert.job import Artifact, Job

EDGE_MODULES = ("torch_to_onnx", "onnx_to_tf", "torch_to_tflite")


@dataclasses.dataclass(frozen=True)
class Edge:
    src: str  # format family: torch | onnx | tflite | savedmodel | keras
    dst: str
    name: str
    run: Callable[[Artifact, Job, str], Artifact]
    tools: tuple[str, ...] = ()
    via: str = ""  # a tag `--via` can select (e.g. "litert"); intermediate formats count too
    # Why this edge cannot serve a conversion (source format, options), or None if it can.
    rejects: Callable[[str, object], str | None] = lambda fmt, options: None


def all_edges() -> list[Edge]:
    """Import each edge module (cheap: frameworks load inside `run`) and collect its EDGES."""
    edges: list[Edge] = []
    for name in EDGE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        edges.extend(module.EDGES)
    return edges
