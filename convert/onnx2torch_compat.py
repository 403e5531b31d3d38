"""onnx2torch, made to work here: without torchvision, and with LSTM/GRU.

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
    _register_rnn_converters()
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


def _register_rnn_converters() -> None:
    torch = require("torch", "torch")
    from torch import nn
    from onnx2torch.node_converters.registry import add_converter
    from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult

    class OnnxRNN(nn.Module, OnnxToTorchModule):
        """ONNX GRU/LSTM (forward, reverse, bidirectional), unrolled over a static sequence."""

        def __init__(self, kind, W, R, B, hidden, direction, linear_before_reset, layout, clip, wanted):
            super().__init__()
            self.wanted = wanted  # which of (Y, Y_h[, Y_c]) the graph uses: unused ONNX outputs are ''

            self.kind, self.hidden, self.direction = kind, hidden, direction
            self.linear_before_reset, self.layout, self.clip = linear_before_reset, layout, clip
            self.W, self.R = nn.Parameter(W, requires_grad=False), nn.Parameter(R, requires_grad=False)
            gates = 3 if kind == "GRU" else 4
            B = B if B is not None else torch.zeros(W.shape[0], 2 * gates * hidden, dtype=W.dtype)
            self.B = nn.Parameter(B, requires_grad=False)

        def _act(self, x):
            return x.clamp(-self.clip, self.clip) if self.clip else x

        def _gru(self, x, h, d):
            wz, wr, wh = self.W[d].chunk(3)
            rz, rr, rh = self.R[d].chunk(3)
            wbz, wbr, wbh, rbz, rbr, rbh = self.B[d].chunk(6)
            z = torch.sigmoid(self._act(x @ wz.T + h @ rz.T + wbz + rbz))
            r = torch.sigmoid(self._act(x @ wr.T + h @ rr.T + wbr + rbr))
            if self.linear_before_reset:
                ht = torch.tanh(self._act(x @ wh.T + wbh + r * (h @ rh.T + rbh)))
            else:
                ht = torch.tanh(self._act(x @ wh.T + (r * h) @ rh.T + rbh + wbh))
            return (1 - z) * ht + z * h, None

        def _lstm(self, x, h, c, d):
            wi, wo, wf, wc = self.W[d].chunk(4)
            ri, ro, rf, rc = self.R[d].chunk(4)
            wbi, wbo, wbf, wbc, rbi, rbo, rbf, rbc = self.B[d].chunk(8)
            i = torch.sigmoid(self._act(x @ wi.T + h @ ri.T + wbi + rbi))
            f = torch.sigmoid(self._act(x @ wf.T + h @ rf.T + wbf + rbf))
            g = torch.tanh(self._act(x @ wc.T + h @ rc.T + wbc + rbc))
            c = f * c + i * g
            o = torch.sigmoid(self._act(x @ wo.T + h @ ro.T + wbo + rbo))
            return o * torch.tanh(c), c

        def forward(self, x, initial_h=None, initial_c=None):
            if self.layout == 1:
                x = x.transpose(0, 1)  # -> [seq, batch, input]
            seq, batch = x.shape[0], x.shape[1]
            dirs = self.W.shape[0]
            ys, hs, cs = [], [], []
            for d in range(dirs):
                h = initial_h[d] if initial_h is not None else x.new_zeros(batch, self.hidden)
                c = initial_c[d] if initial_c is not None else x.new_zeros(batch, self.hidden)
                backward = self.direction == "reverse" or d == 1
                steps = range(seq - 1, -1, -1) if backward else range(seq)
                out = [None] * seq
                for t in steps:
                    if self.kind == "GRU":
                        h, _ = self._gru(x[t], h, d)
                    else:
                        h, c = self._lstm(x[t], h, c, d)
                    out[t] = h
                ys.append(torch.stack(out))
                hs.append(h)
                cs.append(c)
            y, y_h, y_c = torch.stack(ys, dim=1), torch.stack(hs), torch.stack(cs)  # [seq, dirs, batch, hidden]
            if self.layout == 1:
                y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
            outs = [o for o, w in zip((y, y_h, y_c), self.wanted) if w]
            return outs[0] if len(outs) == 1 else tuple(outs)

    def convert(node, graph):
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

    for kind in ("GRU", "LSTM"):
        for version in (7, 14, 22):
            try:
                add_converter(operation_type=kind, version=version)(convert)
            except ValueError:
                pass  # a newer onnx2torch registered its own
    _register_loop_converter(add_converter, OnnxMapping, OnnxToTorchModule, OperationConverterResult)
    _register_global_max_pool(add_converter, OnnxToTorchModule, OperationConverterResult)


def _register_global_max_pool(add_converter, OnnxToTorchModule, OperationConverterResult) -> None:
    """ONNX GlobalMaxPool (Keras GlobalMaxPooling via tf2onnx): the max over every spatial axis,
    kept as size-1 axes."""
    from torch import nn

    class OnnxGlobalMaxPool(nn.Module, OnnxToTorchModule):
        def forward(self, x):
            return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)

    def convert(node, graph):
        from onnx2torch.utils.common import onnx_mapping_from_node

        return OperationConverterResult(torch_module=OnnxGlobalMaxPool(), onnx_mapping=onnx_mapping_from_node(node))

    try:
        add_converter(operation_type="GlobalMaxPool", version=1)(convert)
    except ValueError:
        pass  # a newer onnx2torch registered its own


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


def _register_loop_converter(add_converter, OnnxMapping, OnnxToTorchModule, OperationConverterResult) -> None:
    """ONNX Loop (what tf2onnx makes of a TF while-loop, e.g. a Keras 3 GRU or a TFLite WHILE).

    The body graph is converted by onnx2torch itself, with the outer-scope values it reads made
    explicit inputs, and run in a Python loop. Tracing to TorchScript unrolls it for the sample's
    trip count: right for the static shapes fwconv produces, and said so in the manifest.
    """
    torch = require("torch", "torch")
    onnx = require("onnx", "onnx")
    from torch import nn

    class OnnxLoop(nn.Module, OnnxToTorchModule):
        def __init__(self, body, has_trip: bool, has_cond: bool, n_carried: int, n_scan: int):
            super().__init__()
            self.body, self.has_trip, self.has_cond = body, has_trip, has_cond
            self.n_carried, self.n_scan = n_carried, n_scan

        def forward(self, *args):
            args = list(args)
            trip = int(args.pop(0)) if self.has_trip else None
            cond = args.pop(0) if self.has_cond else torch.tensor(True)
            carried, outer = args[: self.n_carried], args[self.n_carried:]
            scans = [[] for _ in range(self.n_scan)]
            i = 0
            while (trip is None or i < trip) and bool(cond):
                outs = self.body(torch.tensor(i, dtype=torch.int64), cond, *carried, *outer)
                outs = outs if isinstance(outs, (tuple, list)) else (outs,)
                cond, carried = outs[0], list(outs[1: 1 + self.n_carried])
                for k in range(self.n_scan):
                    scans[k].append(outs[1 + self.n_carried + k])
                i += 1
            results = carried + [torch.stack(s) if s else torch.empty(0) for s in scans]
            return results[0] if len(results) == 1 else tuple(results)

    def convert(node, graph):
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

    for version in (1, 11, 13, 16, 19, 21):
        try:
            add_converter(operation_type="Loop", version=version)(convert)
        except ValueError:
            pass
