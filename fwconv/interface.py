"""The typed interface between a route's source model and an artifact: which source tensor each
artifact tensor is, and the transpose that turns one into the other.

Every edge returns one, routes compose them, the manifest stores them (`extra.interface`, the
same JSON as always), and the validator pairs tensors through them. Nobody rebuilds it by hand.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Binding:
    source: str  # the tensor's name in the route's source model
    name: str  # its name in the artifact
    transpose: tuple[int, ...] | None = None  # artifact tensor = source tensor.transpose(transpose)

    def to_artifact(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array.transpose(self.transpose)) if self.transpose else array

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "transpose": list(self.transpose) if self.transpose else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Binding":
        return cls(d["source"], d["name"], tuple(d["transpose"]) if d.get("transpose") else None)


def _then(first: tuple[int, ...] | None, second: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The single permutation that applies `first`, then `second`."""
    both = tuple(first[i] for i in second) if first and second else (second or first)
    return None if both is None or list(both) == sorted(both) else tuple(both)


@dataclasses.dataclass(frozen=True)
class Interface:
    inputs: tuple[Binding, ...] = ()
    outputs: tuple[Binding, ...] = ()

    @classmethod
    def identity(cls, inputs: Iterable[str], outputs: Iterable[str]) -> "Interface":
        return cls(tuple(Binding(n, n) for n in inputs), tuple(Binding(n, n) for n in outputs))

    def compose(self, step: "Interface") -> "Interface":
        """`self` maps the route's source to the previous artifact, `step` that artifact to the
        next: the result maps the route's source to the next artifact."""
        def side(mine: tuple[Binding, ...], theirs: tuple[Binding, ...]) -> tuple[Binding, ...]:
            back = {b.name: b for b in mine}
            out = []
            for b in theirs:
                origin = back.get(b.source)
                out.append(Binding(origin.source if origin else b.source, b.name,
                                   _then(origin.transpose if origin else None, b.transpose)))
            return tuple(out)

        return Interface(side(self.inputs, step.inputs), side(self.outputs, step.outputs))

    def feed(self, sample: dict[str, np.ndarray], order: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The source's sample as the artifact takes it: its names, layouts and (given) order."""
        by_name = {b.name: b for b in self.inputs}
        names = list(order) if order is not None else list(by_name)
        return {n: by_name[n].to_artifact(sample[by_name[n].source]) if n in by_name else sample[n] for n in names}

    def side(self, name: str) -> dict[str, tuple[str, tuple[int, ...] | None]]:
        """{source name: (artifact name, transpose)} for 'inputs' or 'outputs'."""
        return {b.source: (b.name, b.transpose) for b in getattr(self, name)}

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {"inputs": [b.to_dict() for b in self.inputs], "outputs": [b.to_dict() for b in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Interface | None":
        if not d:
            return None
        return cls(tuple(Binding.from_dict(e) for e in d.get("inputs", [])),
                   tuple(Binding.from_dict(e) for e in d.get("outputs", [])))
