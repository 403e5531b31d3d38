"""Find routes (lists of edges) from a source format family to a target.

`plan_routes` lists every simple route, shortest first; `--via X` keeps the routes that pass
through (or produce) format X (e.g. onnx) or use an edge tagged X (e.g. litert); `--via auto`
and `best` keep the routes whose intermediates are all ONNX, the hub (torch -> tflite directly, or
via ONNX; never torch -> tflite -> onnx), in preference order (fewest hops first). The pipeline
converts along them until one passes (auto), or along each and keeps the fastest that passes (best).
"""

from __future__ import annotations

from fwconv.convert.edges import Edge, all_edges
from fwconv.models.formats import TORCH_FORMATS
from fwconv.errors import InputError

FAMILY = {**{fmt: "torch" for fmt in TORCH_FORMATS},
          "onnx": "onnx", "tflite": "tflite", "savedmodel": "savedmodel", "keras": "keras",
          "pte": "pte", "hf": "hf", "litertlm": "litertlm"}
TARGETS = ("onnx", "tflite", "savedmodel", "torch", "pte", "litertlm")
MAX_HOPS = 3


def family_of(fmt: str) -> str:
    return FAMILY[fmt]


AUTO_VIAS = ("auto", "best")  # both consider every route; they differ in how many they run (pipeline)
HUB = "onnx"  # the interchange format: `auto` routes pass through nothing else


def route_tags(route: list[Edge]) -> set[str]:
    """What a route goes 'via': the formats it produces (so `--via onnx` also names the direct
    PyTorch -> ONNX export) and its edges' own tags."""
    return {e.dst for e in route} | {e.via for e in route if e.via}


def route_label(route: list[Edge]) -> str:
    return " -> ".join([route[0].src] + [e.dst for e in route]) + (
        f" ({', '.join(sorted(e.via for e in route if e.via))})" if any(e.via for e in route) else "")


def applicable_routes(routes: list[list[Edge]], fmt: str, options) -> list[list[Edge]]:
    """Drop routes with an edge that cannot serve this source and these options; if none is
    left, say why for each."""
    reasons = {route_label(r): [why for e in r if (why := e.rejects(fmt, options))] for r in routes}
    kept = [r for r in routes if not reasons[route_label(r)]]
    if not kept:
        distinct = {", ".join(why) for why in reasons.values()}
        if len(distinct) == 1:  # every route refuses for the same reason: say it once
            raise InputError(f"no route can do this conversion: {distinct.pop()}")
        raise InputError("no route can do this conversion: "
                         + "; ".join(f"{label}: {', '.join(why)}" for label, why in reasons.items()))
    return kept


def all_routes(src_family: str, target: str, edges: list[Edge] | None = None) -> list[list[Edge]]:
    """Every simple route of at most MAX_HOPS edges from a family to a target, shortest first."""
    edges = all_edges() if edges is None else edges
    found: list[list[Edge]] = []

    def walk(node: str, path: list[Edge], seen: set[str]) -> None:
        for edge in edges:
            if edge.src != node or edge.dst in seen or len(path) >= MAX_HOPS:
                continue
            if edge.dst == target:
                found.append(path + [edge])
            else:
                walk(edge.dst, path + [edge], seen | {edge.dst})

    walk(src_family, [], {src_family})
    return sorted(found, key=len)


def plan_routes(src_family: str, target: str, *, via: str = "auto", edges: list[Edge] | None = None) -> list[list[Edge]]:
    if target not in TARGETS:
        raise InputError(f"unknown target format '{target}'", hint=f"choose one of: {', '.join(TARGETS)}")
    if src_family == target:
        raise InputError(f"the source is already {target}")
    found = all_routes(src_family, target, edges)
    if not found:
        raise InputError(f"no conversion route from {src_family} to {target} in this version of fwconv")
    if via and via not in AUTO_VIAS:
        chosen = [r for r in found if via in route_tags(r)]
        if not chosen:
            raise InputError(f"no route from {src_family} to {target} via {via}",
                             hint="routes: " + "; ".join(route_label(r) for r in found))
        found = chosen
    # A detour through another deployment format (torch -> tflite -> onnx) costs time and precision
    # and runs converters the user did not ask for: prefer routes whose intermediates are the hub.
    return [r for r in found if all(e.dst == HUB for e in r[:-1])] or found
