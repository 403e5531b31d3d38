"""Route repair: when every route's artifact fails parity, convert again with settings that avoid
the converters' known risky steps, in a bounded, documented order, and keep the first artifact
that passes.

Each repair is a replacement of fields in one edge's settings dataclass (`dataclasses.replace`;
the edges read their settings with `job.settings(cls)`, nothing else changes), so an artifact
records exactly which settings made it. The first divergence from the layerwise debugger (when
it could run) puts the repairs aimed at that op first: a wrong Pad tries the opset upgrade
before anything else.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fwconv.convert.edges.onnx_to_tf import Onnx2TfSettings
from fwconv.convert.edges.torch_to_onnx import ExportSettings
from fwconv.errors import ConversionError

OTHER = "the other one"  # ExportSettings.exporter in a repair: whichever exporter did not run


class RepairNotApplicable(ConversionError):
    """An edge found that a repair would change nothing here (the graph is already at that
    opset, say): the attempt is dropped before any converter runs."""

    def __init__(self, message: str):
        super().__init__("repair", message)


@dataclasses.dataclass(frozen=True)
class Repair:
    name: str
    why: str  # the risky step it avoids
    settings: type  # the edge settings dataclass it changes
    change: tuple  # (field, value) pairs replaced in those settings
    edges: tuple[tuple[str, str], ...]  # the edges (src, dst family) reading them: it applies to routes with one
    ops: tuple[str, ...] = ()  # op types (ONNX/TFLite/aten spelling, lower case) that put it first

    def summary(self) -> dict[str, Any]:
        return {"repair": self.name, "why": self.why, "settings": dict(self.change)}


ONNX_TF = (("onnx", "tflite"), ("onnx", "savedmodel"))
REPAIRS: list[Repair] = [
    Repair("onnx-opset-upgrade", "old attribute forms onnx2tf reads wrongly (e.g. Pad-2's `value` before opset 11)",
           Onnx2TfSettings, (("opset_upgrade", 13),), ONNX_TF, ("pad", "upsample", "resize", "slice", "clip", "split")),
    Repair("no-onnxsim", "onnxsim's constant folding and fusions before onnx2tf", Onnx2TfSettings,
           (("onnxsim", False),), ONNX_TF, ("reshape", "gather", "concat", "shape", "expand")),
    Repair("no-pseudo-ops", "onnx2tf's Erf/GELU pseudo-op replacements", Onnx2TfSettings, (("pseudo_ops", ()),),
           ONNX_TF, ("erf", "gelu", "tanh", "mul")),
    Repair("batchmatmul-unfold", "onnx2tf's batched MatMul kernels", Onnx2TfSettings, (("batchmatmul_unfold", True),),
           ONNX_TF, ("matmul", "batch_matmul", "batchmatmul", "einsum")),
    Repair("no-group-convolution", "onnx2tf's grouped-convolution lowering", Onnx2TfSettings,
           (("group_convolution", False),), ONNX_TF, ("conv", "conv_2d", "depthwise_conv_2d")),
    Repair("other-exporter", "the PyTorch -> ONNX exporter that ran (dynamo or TorchScript)", ExportSettings,
           (("exporter", OTHER),), (("torch", "onnx"),)),
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
    applicable = [r for r in REPAIRS if edges & set(r.edges)]
    aimed = [r for r in applicable if aimed_at(r, divergence)]
    return aimed + [r for r in applicable if r not in aimed]


def resolve(repair: Repair, used: dict[type, Any], source_kind: str | None) -> dict[type, Any] | None:
    """The edge settings for one attempt: the settings the failed attempt ran with, the repair's
    fields replaced (OTHER made concrete from the exporter that ran). None when the repair cannot
    change anything here (a TorchScript module has one exporter; the edge did not run)."""
    ran = used.get(repair.settings)
    if ran is None:
        return None
    change = dict(repair.change)
    if change.get("exporter") == OTHER:
        if source_kind == "torchscript" or ran.exporter not in ("dynamo", "torchscript"):
            return None
        change["exporter"] = "torchscript" if ran.exporter == "dynamo" else "dynamo"
    return {repair.settings: dataclasses.replace(ran, **change)}


def described(overrides: dict[type, Any]) -> dict[str, Any]:
    """A repair's settings for the manifest and the notes: each edge's settings as plain data."""
    return {cls.__name__: dataclasses.asdict(value) for cls, value in overrides.items()}
