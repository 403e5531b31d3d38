"""From a refusal to a bug report: the smallest ONNX subgraph the converter still gets wrong.

`reduce_onnx(model_path, converter)` cuts the ONNX graph, re-converting and re-running every cut
for real with the same converter and settings: bisect from the outputs back (the shortest prefix
that still fails), then from the inputs forward (the latest start that still fails; the cut
tensors become inputs fed with ONNX Runtime's values), then drop nodes one at a time, all within
a time budget. What is left is written as a repro bundle (bundle.py) whose repro.py calls the
converter alone. The converters are those that take an ONNX graph: onnx2tf (ONNX -> TFLite) and
onnx2torch (ONNX -> PyTorch), each driven by the same module the bundle's repro.py is
(repro_onnx2tf.py, repro_onnx2torch.py), so the reduction and the repro cannot disagree.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import numpy as np

from fwconv.errors import InputError, require

CONVERTERS = {"tflite": "onnx2tf", "torch": "onnx2torch"}  # the target an ONNX graph is converted to -> converter


def repro_module(converter: str):
    """The repro module of `converter` (its source is the bundle's repro.py)."""
    import importlib

    return importlib.import_module(f"fwconv.convert.reduce.repro_{converter}")


@dataclasses.dataclass
class Reduction:
    """What the reduction found; `nodes` is the minimal subgraph (op type, node name)."""

    status: str  # reduced | not_reproduced (the converter makes a matching model now)
    line: str  # the repro's verdict on what is left
    nodes: list[tuple[str, str]]
    start_nodes: int
    conversions: int
    seconds: float
    budget_spent: bool = False
    model: object = None  # the minimal onnx.ModelProto
    feeds: dict = dataclasses.field(default_factory=dict)
    expected: list = dataclasses.field(default_factory=list)


class Subgraphs:
    """Cuts of one ONNX model, each a model of its own: the chosen nodes, their outside inputs as
    graph inputs (fed with ONNX Runtime's values from the whole model), their dangling outputs as
    graph outputs."""

    def __init__(self, model, feeds: dict[str, np.ndarray]):
        onnx = require("onnx", "onnx")
        self.onnx = onnx
        self.model = onnx.shape_inference.infer_shapes(model)
        self.nodes = list(self.model.graph.node)
        self.initializers = {i.name: i for i in self.model.graph.initializer}
        self.values = {**feeds, **self._all_values(feeds)}

    def _all_values(self, feeds: dict) -> dict[str, np.ndarray]:
        """Every node output's value in ONNX Runtime on `feeds`."""
        ort = require("onnxruntime", "onnx")
        model = self.onnx.ModelProto()
        model.CopyFrom(self.model)
        known = {o.name for o in model.graph.output}
        for node in model.graph.node:
            model.graph.output.extend(self.onnx.ValueInfoProto(name=o) for o in node.output if o and o not in known)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds)))

    def cut(self, keep: list[int]):
        """(model, feeds, expected outputs) of the nodes at indices `keep` (in graph order)."""
        helper = self.onnx.helper
        chosen = [self.nodes[i] for i in sorted(keep)]
        produced = {o for n in chosen for o in n.output if o}
        consumed = [i for n in chosen for i in n.input if i]
        outside = list(dict.fromkeys(i for i in consumed if i not in produced and i not in self.initializers))
        used_later = {i for n in chosen for i in n.input}
        finals = {o.name for o in self.model.graph.output}
        outputs = [o for n in chosen for o in n.output if o and (o not in used_later or o in finals)]
        names = {n: f"input_{k}" for k, n in enumerate(outside)} | {n: f"output_{k}" for k, n in enumerate(outputs)}
        renamed = []
        for node in chosen:  # plain names: a converter may rewrite "/layer/Conv_output_0"
            copy = self.onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[:] = [names.get(i, i) for i in node.input]
            copy.output[:] = [names.get(o, o) for o in node.output]
            renamed.append(copy)
        info = lambda name: helper.make_tensor_value_info(
            names[name], helper.np_dtype_to_tensor_dtype(self.values[name].dtype), list(self.values[name].shape))
        graph = helper.make_graph(renamed, "minimal", [info(n) for n in outside], [info(n) for n in outputs],
                                  [self.initializers[i] for i in dict.fromkeys(consumed) if i in self.initializers])
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import), producer_name="fwconv-reduce")
        model.ir_version = self.model.ir_version
        return model, {names[n]: self.values[n] for n in outside}, [self.values[n] for n in outputs]


def sample_feeds(model, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for the reduction: normal floats, small non-negative integers; symbolic dims 1."""
    onnx = require("onnx", "onnx")
    rng = np.random.default_rng(seed)
    initializers = {i.name for i in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        feeds[value.name] = (rng.standard_normal(shape) if np.issubdtype(dtype, np.floating)
                             else rng.integers(0, 4, shape)).astype(dtype)
    return feeds


class Reducer:
    """The search, each probe a real conversion (cached by node set), within `budget` seconds."""

    def __init__(self, graphs: Subgraphs, fails, budget: float):  # fails(model, feeds, expected) -> bool
        self.graphs, self.fails, self.budget = graphs, fails, budget
        self.start, self.seen, self.conversions = time.perf_counter(), {}, 0

    def over_budget(self) -> bool:
        return time.perf_counter() - self.start > self.budget

    def probe(self, keep: list[int]) -> bool:
        key = frozenset(keep)
        if key not in self.seen:
            if self.over_budget():
                return False  # out of time: a cut not tried is not taken
            model, feeds, expected = self.graphs.cut(list(key))
            if not feeds or not expected:  # constants alone: a converter's corner, not the user's failure
                self.seen[key] = False
                return False
            self.conversions += 1
            self.seen[key] = self.fails(model, feeds, expected)
        return self.seen[key]

    def run(self) -> list[int]:
        n = len(self.graphs.nodes)
        lo, hi = 0, n - 1  # the shortest failing prefix ends at hi
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self.probe(list(range(mid + 1))) else (mid + 1, hi)
        end = hi
        lo, hi = 0, end  # the latest start that still fails
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.probe(list(range(mid, end + 1))) else (lo, mid - 1)
        keep = list(range(lo, end + 1))
        for index in list(keep[:-1]):  # then one at a time (the cut node's output becomes an input)
            trial = [i for i in keep if i != index]
            if self.probe(trial):
                keep = trial
        return keep


def reduce_onnx(model_path: str, settings: dict, *, converter: str = "onnx2tf", budget: float = 300.0,
                feeds: dict | None = None) -> Reduction:
    """Reduce `model_path` to the smallest subgraph `converter` (with `settings`) still gets wrong."""
    repro = repro_module(converter)
    onnx = require("onnx", "onnx")
    if converter == "onnx2torch":  # imported as fwconv runs it: no torchvision here, fwconv's converters added
        from fwconv.convert.onnx2torch_compat import onnx2torch

        onnx2torch()
    model = onnx.load(model_path)
    feeds = feeds or sample_feeds(model)
    graphs = Subgraphs(model, feeds)

    def outcome(sub, sub_feeds, expected) -> tuple[str | None, str]:
        with tempfile.TemporaryDirectory(prefix="fwconv-reduce-") as work:
            path = os.path.join(work, "minimal.onnx")
            onnx.save(sub, path)
            return _convert_and_compare(repro, path, work, sub_feeds, expected, settings)

    started = time.perf_counter()
    whole = list(range(len(graphs.nodes)))
    kind, line = outcome(*graphs.cut(whole))
    if kind is None:
        return Reduction("not_reproduced", line, [], len(whole), 1, round(time.perf_counter() - started, 1))
    # a cut counts only when it fails the same way (a mismatch stays a mismatch, a crash a crash)
    reducer = Reducer(graphs, lambda *cut: outcome(*cut)[0] == kind, budget)
    reducer.seen[frozenset(whole)], reducer.conversions = True, 1
    keep = reducer.run()
    minimal, sub_feeds, expected = graphs.cut(keep)
    line = outcome(minimal, sub_feeds, expected)[1]
    nodes = [(graphs.nodes[i].op_type, graphs.nodes[i].name) for i in keep]
    return Reduction("reduced", line, nodes, len(whole), reducer.conversions, round(time.perf_counter() - started, 1),
                     reducer.over_budget(), minimal, sub_feeds, expected)


def reduce_to_bundle(onnx_path: str, converter: str, settings: dict, bundle: str, *, budget: float, force: bool,
                     protected=()) -> Reduction:
    """Reduce `onnx_path` (progress shown) and, where the failure reproduces, write the bundle to
    `bundle`: what `fwconv debug --reduce` and a conversion's `--reduce` both do."""
    from fwconv import progress
    from fwconv.convert.reduce.bundle import write_bundle

    with progress.step("reduce: re-converting cuts of the ONNX graph"):
        found = reduce_onnx(onnx_path, settings, converter=converter, budget=budget)
    if found.status == "reduced":
        write_bundle(found, converter, settings, bundle, force=force, protected=protected)
    return found


def _convert_and_compare(repro, path: str, work: str, feeds: dict, expected: list,
                         settings: dict) -> tuple[str | None, str]:
    """The repro's own steps on one cut: convert, run in the converter's runtime, compare.
    ("mismatch" or "crash", or None where it matches; a one-line verdict)."""
    from fwconv.quiet import captured_output

    name = repro.__name__.rsplit("repro_", 1)[-1]
    try:
        with captured_output():
            got = repro.run(path, work, settings, feeds)
    except Exception as exc:  # the converter fails on the cut: a failure of the converter too
        return "crash", f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    except SystemExit as exc:
        return "crash", f"{name} stopped (exit {exc.code})"
    error = repro.mismatch(expected, got)
    return ("mismatch" if error > repro.TOLERANCE else None), f"error/scale {error:.3g}"


def converter_settings(candidate: str | None) -> tuple[str, dict]:
    """(converter, its keyword arguments) as fwconv ran it for `candidate` (its manifest's route:
    ... -> onnx -> tflite is onnx2tf, ... -> onnx -> torch onnx2torch; onnx2tf by default)."""
    from fwconv.convert.edges.onnx_to_tf import Onnx2TfSettings

    target = "tflite"
    if candidate:
        from fwconv.manifest import read_manifest

        manifest = read_manifest(candidate)
        route = list(manifest.route or []) if manifest is not None else []
        if route and (len(route) < 2 or route[-2] != "onnx" or route[-1] not in CONVERTERS):
            raise InputError(f"{candidate} was not converted from ONNX by onnx2tf or onnx2torch (route "
                             f"{' -> '.join(route)}): --reduce re-runs those on ONNX subgraphs")
        target = route[-1] if route else target
    if CONVERTERS[target] == "onnx2torch":
        return "onnx2torch", {}
    return "onnx2tf", {**Onnx2TfSettings().onnx2tf_kwargs(), "not_use_onnxsim": True}
