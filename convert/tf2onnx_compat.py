"""tf2onnx, taught the ops real TensorFlow models use and it does not know (tf2onnx 1.17).

- `Erfc`: Keras' exact GELU (`approximate=False`) computes erfc. tf2onnx has no handler and
  passes the op through unchanged, so the ONNX graph names an op that does not exist. Here it
  becomes 1 - Erf(x).
- TFLite's fused `GELU` (what TF's converter makes of a Keras GELU): tf2onnx's TFLite reader has
  no handler. Here it becomes the exact formula 0.5·x·(1 + erf(x/√2)), or the tanh form when the
  op says `approximate`.

Both are registered with tf2onnx's own handler registry once, before a conversion runs.
"""

from __future__ import annotations

import math

import numpy as np

_REGISTERED: list[bool] = []


def _const(ctx, like: str, value: float) -> str:
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(like))
    return ctx.make_const(utils.make_name("fwconv_const"), np.array(value, dtype=dtype)).output[0]


def _op(ctx, op_type: str, *inputs: str) -> str:
    return ctx.make_node(op_type, list(inputs)).output[0]


def _replace(ctx, node, op_type: str, inputs: list[str]) -> None:
    """Put `op_type(inputs)` where `node` was, under the same output names."""
    outputs, shapes, dtypes = list(node.output), [ctx.get_shape(o) for o in node.output], \
        [ctx.get_dtype(o) for o in node.output]
    ctx.remove_node(node.name)
    ctx.make_node(op_type, inputs, outputs=outputs, shapes=shapes, dtypes=dtypes)


def erfc(ctx, node) -> None:
    x = node.input[0]
    _replace(ctx, node, "Sub", [_const(ctx, x, 1.0), _op(ctx, "Erf", x)])


def gelu(ctx, node) -> None:
    x = node.input[0]
    if node.get_attr_value("approximate", 0):
        cube = _op(ctx, "Mul", _op(ctx, "Mul", x, x), x)
        inner = _op(ctx, "Add", x, _op(ctx, "Mul", cube, _const(ctx, x, 0.044715)))
        core = _op(ctx, "Tanh", _op(ctx, "Mul", inner, _const(ctx, x, math.sqrt(2 / math.pi))))
    else:
        core = _op(ctx, "Erf", _op(ctx, "Mul", x, _const(ctx, x, 1 / math.sqrt(2))))
    half_x = _op(ctx, "Mul", x, _const(ctx, x, 0.5))
    _replace(ctx, node, "Mul", [half_x, _op(ctx, "Add", core, _const(ctx, x, 1.0))])


def register() -> None:
    """Add the handlers to tf2onnx's registry (once per process)."""
    if _REGISTERED:
        return
    from tf2onnx.handler import tf_op, tfl_op

    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            erfc(ctx, node)

    class TflGelu:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            gelu(ctx, node)

    tf_op("Erfc")(Erfc)
    tfl_op("TFL_GELU")(TflGelu)
    _REGISTERED.append(True)
