"""Route repair: when every route's artifact fails parity, convert again with settings that avoid
the converters' known risky steps, in a bounded, documented order, and keep the first artifact
that passes.

Each repair is a set of overrides the edges read from `job.repair` (nothing else changes), so an
artifact records exactly which settings made it. The first divergence from the layerwise
debugger (when it could run) puts the repairs aimed at that op first: a wrong Pad tries the
opset upgrade before anything else.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fwconv.errors import ConversionError

DEFAULT_BUDGET_S = 600.0  # all repair attempts of one conversion together


class RepairNotApplicable(ConversionError):
    """An edge found that a repair would change nothing here (the graph is already at that
    opset, say): the attempt is dropped before any converter runs."""

    def __init__(self, message: str):
        super().__init__("repair", message)


@dataclasses.dataclass(frozen=True)
class Repair:
    name: str
    why: str  # the risky step it avoids
    overrides: dict[str, Any]  # what the edges read from job.repair
    edge: tuple[str, str]  # the edge (src, dst family) it changes: it applies to routes that have one
    ops: tuple[str, ...] = ()  # op types (ONNX/TFLite/aten spelling, lower case) that put it first

    def summary(self) -> dict[str, Any]:
        return {"repair": self.name, "why": self.why, "settings": self.overrides}


def _onnx_tf(dst: str) -> list[Repair]:
    return [
        Repair("onnx-opset-upgrade", "old attribute forms onnx2tf reads wrongly (e.g. Pad-2's `value` before opset 11)",
               {"onnx_opset_upgrade": 13}, ("onnx", dst), ("pad", "upsample", "resize", "slice", "clip", "split")),
        Repair("no-onnxsim", "onnxsim's constant folding and fusions before onnx2tf", {"onnxsim": False},
               ("onnx", dst), ("reshape", "gather", "concat", "shape", "expand")),
        Repair("no-pseudo-ops", "onnx2tf's Erf/GELU pseudo-op replacements", {"onnx2tf": {"replace_to_pseudo_operators": []}},
               ("onnx", dst), ("erf", "gelu", "tanh", "mul")),
        Repair("batchmatmul-unfold", "onnx2tf's batched MatMul kernels", {"onnx2tf": {"enable_batchmatmul_unfold": True}},
               ("onnx", dst), ("matmul", "batch_matmul", "batchmatmul", "einsum")),
        Repair("no-group-convolution", "onnx2tf's grouped-convolution lowering",
               {"onnx2tf": {"disable_group_convolution": True}}, ("onnx", dst), ("conv", "conv_2d", "depthwise_conv_2d")),
    ]


REPAIRS: list[Repair] = [
    *_onnx_tf("tflite"), *_onnx_tf("savedmodel"),
    Repair("other-exporter", "the PyTorch -> ONNX exporter that ran (dynamo or TorchScript)", {"exporter": "other"},
           ("torch", "onnx")),
]


def _diverging_ops(divergence: dict | None) -> set[str]:
    if not divergence:
        return set()
    sides = (divergence.get("reference") or {}, divergence.get("candidate") or {})
    return {s.get("op_type", "").lower().split(".")[-1] for s in sides} | {
        s.get("op_type", "").lower().replace("aten.", "").split(".")[0] for s in sides}


def aimed_at(repair: Repair, divergence: dict | None) -> bool:
    """Whether the repair targets the op where the models part ways."""
    return bool(_diverging_ops(divergence) & set(repair.ops))


def plan(route, divergence: dict | None = None) -> list[Repair]:
    """The repairs that apply to this route: those aimed at the diverging op first, then the rest
    in table order (most often helpful first)."""
    edges = {(e.src, e.dst) for e in route}
    applicable = [r for r in REPAIRS if r.edge in edges]
    aimed = [r for r in applicable if aimed_at(r, divergence)]
    return aimed + [r for r in applicable if r not in aimed]


def resolve(repair: Repair, failed_stages, source_kind: str | None) -> dict[str, Any] | None:
    """The overrides for one attempt, made concrete from the failed attempt (which exporter ran);
    None when the repair cannot change anything here (a TorchScript module has one exporter)."""
    if repair.overrides.get("exporter") != "other":
        return dict(repair.overrides)
    used = [s.stage.split(":", 1)[1] for s in failed_stages if s.stage.startswith("export:") and s.status == "ok"]
    if not used or source_kind == "torchscript":
        return None
    return {"exporter": "torchscript" if used[-1] == "dynamo" else "dynamo"}
