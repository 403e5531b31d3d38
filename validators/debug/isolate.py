"""Isolation mode (as nobuco does for PyTorch -> Keras): each candidate op runs alone, fed the
reference's values for every input the debugger paired, so an op that is wrong by itself
stands out instead of the error it passes on. ONNX candidates only: ONNX Runtime can run a
one-node graph; LiteRT and TF have no per-op entry point."""

from __future__ import annotations

import numpy as np

from fwconv.validators.debug.pairing import Pair
from fwconv.validators.debug.views import scaled_error
from fwconv.validators.metrics import compare_arrays


def isolate_ops(cand_runner, ref_nodes, cand_nodes, pairs: list[Pair], cand_feed, tolerance):
    """{pair index: isolated metrics} for each pair whose candidate op could run alone, and notes."""
    if "onnx" not in getattr(cand_runner, "formats", ()):
        return {}, [f"isolation mode needs an ONNX candidate ({cand_runner.name} cannot run one op alone): "
                    "errors shown are propagated"]
    import onnx

    from fwconv.models.onnx import load_onnx

    model = load_onnx(cand_runner.path, check=False)
    producer = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name: t for t in model.graph.initializer}
    known = {cand_nodes[k].tensor: cand_nodes[k].value for k in range(len(cand_nodes))} | dict(cand_feed)
    fed_by_ref = {cand_nodes[p.cand].tensor: p.view.to_candidate(ref_nodes[p.ref].value, cand_nodes[p.cand].value.shape)
                  for p in pairs}
    results, failed = {}, 0
    for k, p in enumerate(pairs):
        node = producer.get(cand_nodes[p.cand].tensor)
        if node is None:
            continue
        feed = {i: fed_by_ref.get(i, known.get(i)) for i in node.input if i and i not in initializers}
        try:
            out = _run_node(onnx, model, node, feed, [initializers[i] for i in node.input if i in initializers])
        except Exception:  # an op needing outer scope (If/Loop bodies) or a shape it cannot infer
            failed += 1
            continue
        value = out[list(node.output).index(cand_nodes[p.cand].tensor)]
        ref = ref_nodes[p.ref].value
        parity = compare_arrays(ref_nodes[p.ref].tensor, ref, p.view.to_reference(value, ref.shape), tolerance)
        results[k] = {"max_abs_err": parity.metrics.get("max_abs_err"), "scaled_max_err": scaled_error(
            ref, p.view.to_reference(value, ref.shape)), "cosine": parity.metrics.get("cosine"),
            "within_tolerance": parity.passed}
    notes = [f"isolation: {failed} candidate ops could not run alone (errors shown propagated)"] if failed else []
    return results, notes


def _run_node(onnx, model, node, feed: dict[str, np.ndarray], initializers) -> list[np.ndarray]:
    """One node as its own graph in ONNX Runtime, with the model's opsets."""
    import onnxruntime as ort
    from onnx import helper

    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
              for name, v in feed.items()]
    outputs = [onnx.ValueInfoProto(name=o) for o in node.output if o]
    graph = helper.make_graph([node], "isolated", inputs, outputs, initializer=initializers)
    single = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(single.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    return session.run(None, feed)
