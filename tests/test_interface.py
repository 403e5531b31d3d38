"""The typed interface (fwconv.interface): composition of transposes along a route, feeding a
source sample to an artifact, and the manifest round trip. Fast: no framework."""

from __future__ import annotations

import numpy as np

from fwconv.interface import Binding, Interface

NHWC = (0, 2, 3, 1)
NCHW = (0, 3, 1, 2)


def test_identity_and_manifest_round_trip():
    iface = Interface.identity(["x", "y"], ["out"])
    assert [b.name for b in iface.inputs] == ["x", "y"] and iface.outputs[0] == Binding("out", "out")
    assert Interface.from_dict(iface.to_dict()) == iface
    assert Interface.from_dict(None) is None


def test_compose_chains_names_and_transposes():
    """source -> onnx (renamed) -> tflite (NHWC) -> back to NCHW: names chain to the source, and
    the transposes multiply out (NHWC then NCHW is no transpose at all)."""
    to_onnx = Interface((Binding("image", "input_0"),), (Binding("logits", "output_0"),))
    to_tflite = Interface((Binding("input_0", "serving_image", NHWC),), (Binding("output_0", "Identity"),))
    back = Interface((Binding("serving_image", "image", NCHW),), (Binding("Identity", "logits"),))
    route = to_onnx.compose(to_tflite)
    assert route.inputs == (Binding("image", "serving_image", NHWC),)
    assert route.outputs == (Binding("logits", "Identity"),)
    assert route.compose(back).inputs == (Binding("image", "image", None),)


def test_feed_applies_names_layout_and_order():
    iface = Interface((Binding("image", "a", NHWC), Binding("meta", "b")), ())
    image, meta = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4), np.ones((1, 6), np.float32)
    fed = iface.feed({"image": image, "meta": meta}, order=["b", "a"])
    assert list(fed) == ["b", "a"]
    assert fed["a"].shape == (1, 3, 4, 2) and np.array_equal(fed["a"], image.transpose(NHWC))
    assert fed["a"].flags["C_CONTIGUOUS"] and fed["b"] is meta


def test_side_view_for_pairing():
    iface = Interface((Binding("image", "x", NHWC),), (Binding("logits", "y"),))
    assert iface.side("inputs") == {"image": ("x", NHWC)} and iface.side("outputs") == {"logits": ("y", None)}
