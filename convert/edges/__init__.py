"""Conversion edges. Each module defines one or more `Edge`s; the planner finds routes over them.

An edge's `run(artifact, job, out_path)` turns one artifact into another at `out_path`
(inside the job's scratch directory) and returns the new Artifact.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from fwconv.models.formats import TORCH_FORMATS
from fwconv.convert.job import Artifact, Job

def needs_torch_source(fmt: str, options) -> str | None:
    """For edges that start from a loaded PyTorch module (export, litert-torch)."""
    return None if fmt in TORCH_FORMATS else "needs a PyTorch source (it exports the loaded module)"


def needs_exportable_module(fmt: str, options, tool: str) -> str | None:
    """For edges built on torch.export (litert-torch, ExecuTorch): TorchScript cannot be exported."""
    if needs_torch_source(fmt, options):
        return needs_torch_source(fmt, options)
    if fmt == "torchscript":
        return f"{tool} needs a module torch.export accepts (.pt2 or a factory), not TorchScript"
    return None


def named_module(module, input_names: list[str], output_names: list[str], *, positional: bool = False):
    """The source module called with inputs by name, returning a dict of its flattened outputs
    under fwconv's output names: what torch.export-based edges export, so the artifact's
    inputs and outputs come in the source's order, under the source's names. `positional`:
    forward takes the inputs in that order as plain parameters instead of **inputs (torch 2.13's
    export cannot take dynamic_shapes for a **kwargs forward: "Must provide a tree_name")."""
    from fwconv.errors import require
    from fwconv.models.torch_source import flatten_outputs

    torch = require("torch", "torch")

    class NamedIO(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, **inputs):
            return self._named([inputs[n] for n in input_names])

        def _named(self, args: list):
            flat = flatten_outputs(self.inner(*args))
            return {name: tensor for name, (_, tensor) in zip(output_names, flat)}

    if positional:
        params = ", ".join(f"x{i}" for i in range(len(input_names)))
        namespace: dict = {}
        exec(f"def forward(self, {params}):\n    return self._named([{params}])", namespace)  # fixed arity
        NamedIO.forward = namespace["forward"]
    return NamedIO()  # no .eval(): an exported GraphModule refuses train(); the inner module is in eval mode


EDGE_MODULES = ("torch_to_onnx", "onnx_to_tf", "torch_to_tflite", "tf_to_onnx", "onnx_to_torch", "torch_to_pte")


def static_shapes_only(why: str):
    """For edges whose tool freezes every dim: with --dynamic they step aside, saying why (the
    validator would otherwise catch the frozen artifact at the other sizes)."""
    return lambda fmt, options: f"keeps shapes static: {why}" if options.dynamic else None


@dataclasses.dataclass(frozen=True)
class Edge:
    src: str  # format family: torch | onnx | tflite | savedmodel | keras
    dst: str
    run: Callable[[Artifact, Job, str], Artifact]
    tools: tuple[str, ...] = ()
    via: str = ""  # a tag `--via` can select (e.g. "litert"); intermediate formats count too
    # Why this edge cannot serve a conversion (source format, options), or None if it can.
    rejects: Callable[[str, object], str | None] = lambda fmt, options: None
    max_opset: int | None = None  # the newest ONNX opset this edge takes as input (earlier edges comply)


def all_edges() -> list[Edge]:
    """Import each edge module (cheap: frameworks load inside `run`) and collect its EDGES."""
    edges: list[Edge] = []
    for name in EDGE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        edges.extend(module.EDGES)
    return edges
