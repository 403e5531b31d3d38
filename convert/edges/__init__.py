"""Conversion edges. Each module defines one or more `Edge`s; the planner finds routes over them.

An edge's `run(artifact, job, out_path)` turns one artifact into another at `out_path`
(inside the job's scratch directory) and returns the new Artifact.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from fwconv.convert.job import Artifact, Job


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


EDGE_MODULES = ("torch_to_onnx", "onnx_to_tf", "torch_to_tflite", "tf_to_onnx", "onnx_to_torch", "torch_to_pte",
                "hf_to_litert", "hf_to_pte", "hf_to_onnx")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What an edge can serve, as data the planner matches against the options (and explains,
    in the edge's own words from `why`, when it cannot). The defaults restrict nothing: an edge
    declares only what it cannot do (an intermediate edge passes a float graph on, whatever
    precision or layout the last edge will make)."""

    exportable_only: bool = False  # needs a module torch.export accepts: not TorchScript
    backend: str | None = None  # the ExecuTorch backend it is (--backend picks)
    quantize: tuple | None = None  # the --quantize values it takes (None: any)
    quantize_by_name: tuple = ()  # --quantize values it makes only when --via names it (another interface)
    int8_io: bool = True
    layouts: tuple | None = None  # the --layout values it takes (None: any)
    dynamic: str = "yes"  # "yes" | "no" | "by-name" (only when --via names it)
    dynamic_torchscript: bool = True  # keeps dims variable from a TorchScript source too
    dynamic_with_quantize: bool = True
    why: tuple = ()  # (capability, reason) pairs: the edge's words for each refusal ({value} is the option's)

    def refusal(self, fmt: str, options, tool: str, tag: str) -> str | None:
        """Why this edge cannot serve (source format, options), or None. Checked in a fixed order,
        the first mismatch said."""
        why, q = dict(self.why), options.quantize
        named = bool(tag) and options.via == tag
        chosen = options.backend or "xnnpack"
        checks = (
            ("exportable", self.exportable_only and fmt == "torchscript",
             f"{tool} needs a module torch.export accepts (.pt2 or a factory), not TorchScript"),
            ("backend", self.backend is not None and chosen not in ("auto", self.backend), f"--backend {chosen} was chosen"),
            ("quantize", self.quantize is not None and q not in self.quantize + self.quantize_by_name,
             f"--quantize {q} is not made by {tool}"),
            ("int8_io", options.int8_io and not self.int8_io, f"--int8-io is not made by {tool}"),
            ("quantize_by_name", q in self.quantize_by_name and not named,
             f"--quantize {q} on {tool}: ask for it with --via {tag}"),
            ("layout", self.layouts is not None and options.layout not in self.layouts,
             f"--layout {options.layout}: {tool} keeps the source's layout"),
            ("dynamic_quantize", bool(options.dynamic) and bool(q) and not self.dynamic_with_quantize,
             "--dynamic with --quantize: calibration and export run at the sample's shapes"),
            ("dynamic", bool(options.dynamic) and (self.dynamic == "no" or (self.dynamic == "by-name" and not named)),
             f"{tool} keeps shapes static"),
            ("dynamic_torchscript", bool(options.dynamic) and fmt == "torchscript" and not self.dynamic_torchscript,
             "a TorchScript trace has its shapes baked in"),
        )
        for name, refused, default in checks:
            if refused:
                return why.get(name, default).format(value=q, layout=options.layout, backend=chosen)
        return None


@dataclasses.dataclass(frozen=True)
class Edge:
    src: str  # format family: torch | onnx | tflite | savedmodel | keras
    dst: str
    run: Callable[[Artifact, Job, str], Artifact]
    tools: tuple[str, ...] = ()
    via: str = ""  # a tag `--via` can select (e.g. "litert"); intermediate formats count too
    caps: Capabilities = Capabilities()
    tool: str = ""  # how refusals name it (litert-torch, ExecuTorch...)
    max_opset: int | None = None  # the newest ONNX opset this edge takes as input (earlier edges comply)

    def rejects(self, fmt: str, options) -> str | None:
        """Why this edge cannot serve a conversion (source format, options), or None if it can."""
        return self.caps.refusal(fmt, options, self.tool or f"{self.src} -> {self.dst}", self.via)


def all_edges() -> list[Edge]:
    """Import each edge module (cheap: frameworks load inside `run`) and collect its EDGES."""
    edges: list[Edge] = []
    for name in EDGE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        edges.extend(module.EDGES)
    return edges
