"""ONNX ops that onnx2tf has no converter for but that ONNX itself defines as a function of other
ops (opset 23's Attention, RMSNormalization and RotaryEmbedding, which torch.onnx writes at
opset 23; CastLike, which those bodies use) are expanded into ONNX's own function body, on
onnx2tf's private copy of the graph, before onnxsim folds what the bodies compute from static
shapes. ONNX's body is the op's definition, so the expansion is exact by construction; the
conversion is still validated against the source as always."""

from __future__ import annotations

import collections
import functools
import importlib.util

from fwconv.convert.onnx_prepare import copy_model
from fwconv.errors import first_line, require
from fwconv.models.onnx import default_opset

DOMAIN = "fwconv.expanded"  # the call nodes' domain until the inliner replaces them
ROUNDS = 3  # a body may use an op that needs expanding too (Attention's CastLike)


@functools.lru_cache(maxsize=None)
def onnx2tf_lacks(op_type: str) -> bool:
    """Whether onnx2tf has no converter module for this op (onnx2tf.ops.<OpType>)."""
    return importlib.util.find_spec(f"onnx2tf.ops.{op_type}") is None


def expand_function_ops(model, lacks=onnx2tf_lacks) -> tuple[object, collections.Counter, str]:
    """(the model with each standard op `lacks` names and ONNX defines as a function inlined,
    how many of each op, a note when the expansion itself failed: the graph is then unchanged)."""
    counts: collections.Counter = collections.Counter()
    for _ in range(ROUNDS):
        try:
            model, done = _expand_once(model, lacks)
        except Exception as exc:  # a body ONNX cannot build for these types: onnx2tf's own error follows
            return model, counts, f"function expansion failed: {first_line(exc)}"
        if not done:
            break
        counts.update(done)
    return model, counts, ""


def _expand_once(model, lacks) -> tuple[object, collections.Counter]:
    onnx = require("onnx", "tflite")
    opset = default_opset(model)
    wanted = lambda n: n.domain in ("", "ai.onnx") and lacks(n.op_type) and _is_function(n.op_type, opset)
    if not any(wanted(n) for n in model.graph.node):
        return model, collections.Counter()
    model = copy_model(model)  # the caller's graph stays as it was if anything below fails
    targets = [n for n in model.graph.node if wanted(n)]
    done = collections.Counter(n.op_type for n in targets)
    types = _value_types(model)
    for k, node in enumerate(targets):
        body = _body(node, opset, types)
        body.domain, body.name = DOMAIN, f"{node.op_type}_{k}"
        node.domain, node.op_type = DOMAIN, body.name
        model.functions.append(body)
    model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
    from onnx import inliner

    inlined = inliner.inline_local_functions(model)
    kept = [o for o in inlined.opset_import if o.domain != DOMAIN]
    del inlined.opset_import[:]
    inlined.opset_import.extend(kept)
    return inlined, done


def _is_function(op_type: str, opset: int) -> bool:
    from onnx import defs

    try:
        schema = defs.get_schema(op_type, opset, "")
    except defs.SchemaError:
        return False
    return schema.has_function or schema.has_context_dependent_function


def _body(node, opset: int, types: dict):
    """ONNX's function body for this node (a context-dependent one is built for its input types)."""
    import onnx
    from onnx import defs

    schema = defs.get_schema(node.op_type, opset, "")
    body = onnx.FunctionProto()
    if schema.has_function:
        body.CopyFrom(schema.function_body)
    else:
        empty = onnx.TypeProto()
        body.ParseFromString(schema.get_context_dependent_function(
            node.SerializeToString(), [(types.get(name) or empty).SerializeToString() for name in node.input]))
    return body


def _value_types(model) -> dict:
    """Every value's TypeProto (inputs, inferred intermediates, initializers)."""
    onnx = require("onnx", "tflite")
    typed = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type for v in [*typed.graph.input, *typed.graph.value_info, *typed.graph.output]}
    for init in model.graph.initializer:
        types[init.name] = onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims))
    return types
