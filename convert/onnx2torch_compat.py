"""onnx2torch, made to work here: without torchvision, with LSTM/GRU/Loop/GlobalMaxPool
converters (their torch modules are in onnx2torch_modules.py) and Reshape(allowzero) relaxed.

- onnx2torch imports torchvision for two converters (NonMaxSuppression, RoiAlign). The registry
  build of torchvision is CUDA-only and breaks the CPU torch, so it is not installed. We import
  onnx2torch with a stand-in `torchvision` whose functions raise a clear error, then remove the
  stand-in from sys.modules; graphs with those ops are refused up front with their names.
- onnx2torch has no converter for LSTM/GRU, and recurrent models are common in TensorFlow: the
  modules below implement the ONNX operators' exact semantics (gate orders, directions,
  linear_before_reset, layout, clip) with plain torch ops, so they trace to TorchScript.
"""

from __future__ import annotations

import sys
import types

from fwconv.errors import UnsupportedOpError, require

NEEDS_TORCHVISION = {"NonMaxSuppression": "torchvision.ops.nms", "RoiAlign": "torchvision.ops.roi_align"}
_LOADED = {}


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    def missing(name):
        def fail(*args, **kwargs):
            raise UnsupportedOpError([name], stage="run", hint="this op needs torchvision, which fwconv does not use")
        return fail

    root, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    for name in ("nms", "batched_nms", "roi_align", "box_convert"):
        setattr(ops, name, missing(f"torchvision.ops.{name}"))
    root.ops = ops
    return {"torchvision": root, "torchvision.ops": ops}


def onnx2torch():
    """The onnx2torch package, imported once, with the RNN converters registered."""
    if "module" in _LOADED:
        return _LOADED["module"]
    stand_in = _torchvision_stand_in()
    saved = {k: sys.modules.get(k) for k in stand_in}
    sys.modules.update(stand_in)
    try:
        module = require("onnx2torch", "torch-from-onnx")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    _register_converters()
    _LOADED["module"] = module
    return module


def convert_model(model):
    """onnx2torch.convert, remembering the model's opset for the Loop bodies it converts."""
    _LOADED["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    return onnx2torch().convert(model)


def refuse_torchvision_ops(model) -> None:
    found = sorted({n.op_type for n in model.graph.node if n.op_type in NEEDS_TORCHVISION})
    if found:
        raise UnsupportedOpError(found, stage="convert",
                                 hint="these need torchvision ops (NMS/RoiAlign), which fwconv does not install")


_CONVERTERS = {"GRU": (7, 14, 22), "LSTM": (7, 14, 22), "Loop": (1, 11, 13, 16, 19, 21), "GlobalMaxPool": (1,)}


def _register_converters() -> None:
    """fwconv's converters, for every opset version onnx2torch asks by (unless it has its own)."""
    from onnx2torch.node_converters.registry import add_converter

    functions = {"GRU": _convert_rnn, "LSTM": _convert_rnn, "Loop": _convert_loop, "GlobalMaxPool": _convert_global_max_pool}
    for op, versions in _CONVERTERS.items():
        for version in versions:
            try:
                add_converter(operation_type=op, version=version)(functions[op])
            except ValueError:
                pass  # a newer onnx2torch registered its own


def _convert_rnn(node, graph):
    """ONNX GRU/LSTM -> OnnxRNN; attributes it cannot honour exactly are refused by name."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    from fwconv.convert.onnx2torch_modules import OnnxRNN

    kind = node.operation_type
    attrs = node.attributes
    names = list(node.input_values) + [""] * 8
    x, w, r, b, seq_lens, init_h = names[:6]
    init_c, peephole = (names[6], names[7]) if kind == "LSTM" else ("", "")
    acts = attrs.get("activations")
    defaults = ["Sigmoid", "Tanh"] + (["Tanh"] if kind == "LSTM" else [])
    if acts and [a.decode() if isinstance(a, bytes) else a for a in acts] != defaults * (len(acts) // len(defaults)):
        raise UnsupportedOpError([f"{kind}(activations={acts})"], stage="convert")
    if peephole or seq_lens:
        raise UnsupportedOpError([f"{kind}(" + ("peepholes" if peephole else "sequence_lens") + ")"], stage="convert")
    for name in (w, r) + ((b,) if b else ()):
        if name not in graph.initializers:
            raise UnsupportedOpError([f"{kind}(weights computed at run time)"], stage="convert")
    tensor = lambda n: graph.initializers[n].to_torch() if n else None
    module = OnnxRNN(kind, tensor(w), tensor(r), tensor(b), int(attrs["hidden_size"]),
                     attrs.get("direction", b"forward").decode() if isinstance(attrs.get("direction"), bytes)
                     else attrs.get("direction", "forward"), int(attrs.get("linear_before_reset", 0)),
                     int(attrs.get("layout", 0)), float(attrs.get("clip", 0.0)),
                     [bool(n) for n in list(node.output_values) + [""] * 3][:3])
    inputs = [x] + ([init_h] if init_h else []) + ([init_c] if init_c and kind == "LSTM" else [])
    if init_c and not init_h:
        raise UnsupportedOpError([f"{kind}(initial_c without initial_h)"], stage="convert")
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
        inputs=tuple(inputs), outputs=tuple(n for n in node.output_values if n)))


def _convert_loop(node, graph):
    """ONNX Loop (what tf2onnx makes of a TF while-loop, e.g. a Keras 3 GRU or a TFLite WHILE).

    The body graph is converted by onnx2torch itself, with the outer-scope values it reads made
    explicit inputs, and run in a Python loop. Tracing to TorchScript unrolls it for the sample's
    trip count: right for the static shapes fwconv produces, and said so in the manifest.
    """
    onnx = require("onnx", "onnx")
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    from fwconv.convert.onnx2torch_modules import OnnxLoop

    body = next(a.g for a in node.proto.attribute if a.name == "body")
    produced = {o for n in body.node for o in n.output} | {i.name for i in body.input} | {i.name for i in body.initializer}
    outer = []
    for n in body.node:
        for name in n.input:
            if name and name not in produced and name not in outer:
                outer.append(name)
        if any(a.type == onnx.AttributeProto.GRAPH for a in n.attribute):
            raise UnsupportedOpError(["Loop (nested subgraph in its body)"], stage="convert")
    sub = onnx.GraphProto()
    sub.CopyFrom(body)
    for name in outer:  # outer-scope values the body reads become explicit body inputs
        sub.input.append(onnx.helper.make_value_info(name, onnx.TypeProto()))
    made = {o for n in sub.node for o in n.output}
    for out in sub.output:  # a pass-through output (an input returned as is) needs a node for onnx2torch
        if out.name not in made:
            sub.node.append(onnx.helper.make_node("Identity", [out.name], [out.name + "__passthrough"]))
            out.name += "__passthrough"
    sub_model = onnx.helper.make_model(sub, opset_imports=[onnx.helper.make_opsetid("", _LOADED.get("opset", 17))])
    body_module = onnx2torch().convert(sub_model)
    inputs = list(node.input_values)
    has_trip, has_cond = bool(inputs[0]), bool(inputs[1])
    carried = inputs[2:]
    n_scan = len(body.output) - 1 - len(carried)
    module = OnnxLoop(body_module, has_trip, has_cond, len(carried), n_scan)
    mapped = [x for x in inputs[:2] if x] + carried + outer
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
        inputs=tuple(mapped), outputs=tuple(node.output_values)))


def _convert_global_max_pool(node, graph):
    """ONNX GlobalMaxPool (Keras GlobalMaxPooling via tf2onnx): the max over every spatial axis."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    from fwconv.convert.onnx2torch_modules import OnnxGlobalMaxPool

    return OperationConverterResult(torch_module=OnnxGlobalMaxPool(), onnx_mapping=onnx_mapping_from_node(node))


def relax_reshape_allowzero(model):
    """`Reshape(allowzero=1)` (the dynamo exporter writes it) differs from the default only where
    the target shape holds a 0. With a constant shape free of zeros, the attribute is dropped, so
    onnx2torch (which refuses allowzero=1) converts it; other cases stay and are refused by name."""
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    constants.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                      for a in n.attribute if a.name == "value"})
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        flag = next((a for a in node.attribute if a.name == "allowzero"), None)
        if flag is not None and flag.i == 1 and 0 not in numpy_helper.to_array(constants[node.input[1]]).tolist():
            node.attribute.remove(flag)
    return model
