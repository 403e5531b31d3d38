"""Find a route (a list of edges) from a source format family to a target, breadth-first."""

from __future__ import annotations

from collections import deque

from fwconv.convert.edges import Edge, all_edges
from fwconv.errors import InputError

FAMILY = {"torchscript": "torch", "exported": "torch", "torch-pickle": "torch", "factory": "torch",
          "onnx": "onnx", "tflite": "tflite", "savedmodel": "savedmodel", "keras": "keras"}
TARGETS = ("onnx", "tflite", "savedmodel", "torch")


def family_of(fmt: str) -> str:
    return FAMILY[fmt]


def plan(src_family: str, target: str, edges: list[Edge] | None = None) -> list[Edge]:
    if target not in TARGETS:
        raise InputError(f"unknown target format '{target}'", hint=f"choose one of: {', '.join(TARGETS)}")
    if src_family == target:
        raise InputError(f"the source is already {target}")
    edges = all_edges() if edges is None else edges
    queue: deque[tuple[str, list[Edge]]] = deque([(src_family, [])])
    seen = {src_family}
    while queue:
        node, path = queue.popleft()
        for edge in edges:
            if edge.src != node or edge.dst in seen:
                continue
            route = path + [edge]
            if edge.dst == target:
                return route
            seen.add(edge.dst)
            queue.append((edge.dst, route))
    raise InputError(f"no conversion route from {src_family} to {target} in this version of fwconv")
