"""TorchScript -> ExportedProgram first (PyTorch's TS2EPConverter), so a `.pt` takes every road a
`.pt2` has (litert-torch, the dynamo ONNX exporter, ExecuTorch). The converted program is a
conversion too: it is checked against the TorchScript module on the sample before any edge
uses it; where conversion fails or differs, the TorchScript road is taken and the reason said.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from fwconv.errors import first_line, require
from fwconv.quiet import captured_output

MAX_RELATIVE_ERROR = 1e-5  # the same ops in the same runtime: anything above is a conversion error


@dataclasses.dataclass
class Ts2EpRecord:
    """What happened, for the manifest (a stage) and the route notes."""

    status: str  # ok | failed | differs | skipped
    seconds: float = 0.0
    detail: str = ""
    max_relative_error: float | None = None

    def stage(self) -> dict:
        return {"stage": "ts2ep", "status": "ok" if self.status == "ok" else self.status, "seconds": self.seconds,
                "detail": self.detail}

    def note(self) -> str:
        if self.status == "ok":
            return (f"TorchScript converted to an ExportedProgram (TS2EP) first, checked against the TorchScript "
                    f"module on the sample: error/scale {self.max_relative_error:.2g}")
        return f"TS2EP {self.status}: {self.detail}; the TorchScript road was taken"


def to_exported(torch_source, sample: dict[str, np.ndarray], outputs: dict[str, np.ndarray], options,
                dynamic: dict | None = None):
    """(a TorchSource holding the ExportedProgram, or None; the record). `dynamic` (fwconv.dynamic's
    table of --dynamic dims): those dims stay symbolic in the program, where the trace allows."""
    torch = require("torch", "torch")

    from fwconv.models.torch_source import TorchSource

    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample.values())
    start = time.perf_counter()
    try:
        with captured_output(), torch.no_grad():
            program = _dynamic_program(torch_source.model, sample, dynamic) if dynamic else \
                _static_program(torch_source.model, args)
            got = [t.detach().numpy() for t in torch.utils._pytree.tree_leaves(program.module()(*args))
                   if isinstance(t, torch.Tensor)]
    except Exception as exc:  # the converter's own limits (data-dependent shapes, unsupported prim ops)
        return None, Ts2EpRecord("failed", round(time.perf_counter() - start, 3), first_line(exc)[:300])
    seconds = round(time.perf_counter() - start, 3)
    error = _worst_error(list(outputs.values()), got)
    if error is None or error > MAX_RELATIVE_ERROR:
        what = "a different output structure" if error is None else f"error/scale {error:.3g}"
        return None, Ts2EpRecord("differs", seconds, f"its program gives {what} against the TorchScript module")
    exported = TorchSource("exported", program, torch_source.path, list(torch_source.input_names), example_inputs=args)
    kept = sorted({d.label for per in (dynamic or {}).values() for d in per.values()})
    detail = f"{len(program.graph.nodes)} graph nodes" + (f"; dims kept dynamic: {', '.join(kept)}" if kept else "")
    return exported, Ts2EpRecord("ok", seconds, detail, error)


def _static_program(model, args: tuple):
    """TS2EP at the sample's shapes, every size fixed there (what a .pt2 exported at them holds)."""
    import torch

    program = _folding_converter()(model, args).convert()
    if _symbolic_inputs(program):
        # TS2EP leaves input dims symbolic where the script reads a size: fix them at the
        # sample's (nothing asked for --dynamic), as a .pt2 exported at these shapes would be
        program = torch.export.export(program.module(), args, strict=False)
    if _symbolic_inputs(program):
        raise ValueError("its program keeps input dims symbolic at fixed sample shapes")
    return fold_shape_scalars(program, args)


def _dynamic_program(model, sample: dict[str, np.ndarray], dynamic: dict):
    """TS2EP at the export sample (size-1 dynamic dims doubled: export would fix them), then
    re-exported with the asked dims symbolic and every other dim fixed. Sizes are not folded
    here (that would fix them); a trace that baked an asked dim fails the re-export, and the
    reason is TS2EP's."""
    import torch
    from torch._export.converter import TS2EPConverter

    from fwconv.dynamic import export_sample, torch_dynamic_shapes

    args = tuple(torch.from_numpy(a) for a in export_sample(sample, dynamic).values())
    program = TS2EPConverter(model, args).convert()
    return torch.export.export(program.module(), args, dynamic_shapes=torch_dynamic_shapes(dynamic, list(sample)),
                               strict=False)


def _folding_converter():
    """TS2EPConverter that folds size-only scalar reads in its FX graph before its own export:
    DPT's traced `.pt` computes reshape sizes as tensors (`(size * n).int()`), which export turns
    into unbacked symbols it cannot guard on ("Could not guard on data-dependent expression
    Ne(u3, 0)"). TS2EP has no hook for this, so the one retrace method is wrapped."""
    from torch._export.converter import TS2EPConverter

    class FoldingConverter(TS2EPConverter):
        def retrace_as_exported_program(self, gm, name_to_constant):
            _fold_reads(gm, self.sample_args)
            return super().retrace_as_exported_program(gm, name_to_constant)

    return FoldingConverter


def fold_shape_scalars(program, args: tuple):
    """The program with each tensor-to-int read (`_local_scalar_dense`) that depends on sizes alone
    replaced by its value at the sample's shapes, then re-exported. TorchScript computes sizes as
    tensors (`floor_divide(size, n).int()`); TS2EP keeps them as unbacked symbols, which ExecuTorch's
    lowering cannot guard on ("Could not guard on data-dependent expression u112 < 0": a traced
    Llama). The shapes are fixed already, so these values are too; a read that depends on input
    data is left alone."""
    torch = require("torch", "torch")
    module = program.module()
    if not _fold_reads(module, args):
        return program
    module.graph.eliminate_dead_code()
    module.recompile()
    return torch.export.export(module, args, strict=False)


def _fold_reads(module, args: tuple) -> bool:
    """Replace, in the GraphModule, each size-only `_local_scalar_dense` by its value on `args`
    (whether anything was folded)."""
    import torch

    read = torch.ops.aten._local_scalar_dense.default
    reads = {n for n in module.graph.nodes if n.target is read and _sizes_only(n)}
    if not reads:
        return False
    values = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            if node in reads:
                values[node] = out
            return out

    with torch.no_grad():
        Recorder(module).run(*args)
    for node, value in values.items():
        for user in list(node.users):
            user.args = torch.fx.node.map_arg(user.args, lambda a, n=node, v=value: v if a is n else a)
            user.kwargs = torch.fx.node.map_arg(user.kwargs, lambda a, n=node, v=value: v if a is n else a)
        module.graph.erase_node(node)
    module.recompile()  # what feeds the reads is left for export's own dead-code pass
    return True


def _sizes_only(node, seen: set | None = None) -> bool:
    """Whether `node` reaches the program's inputs only through their sizes (not their values)."""
    import torch

    sizes = (torch.ops.aten.sym_size, torch.ops.aten.sym_size.int, torch.ops.aten.size.default)
    seen = set() if seen is None else seen
    for source in node.all_input_nodes:
        if source in seen:
            continue
        seen.add(source)
        if source.op == "call_function" and source.target in sizes:
            continue
        if source.op == "placeholder" or not _sizes_only(source, seen):
            return False
    return True


def _symbolic_inputs(program) -> bool:
    """Whether any user input of the program has a dim that is not a plain int."""
    names = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" and node.name in names else None
        if value is not None and hasattr(value, "shape") and not all(isinstance(d, int) for d in value.shape):
            return True
    return False


def _worst_error(want: list[np.ndarray], got: list[np.ndarray]) -> float | None:
    if len(want) != len(got) or any(np.shape(w) != np.shape(g) for w, g in zip(want, got)):
        return None
    worst = 0.0
    for w, g in zip(want, got):
        scale = max(float(np.abs(w).max()) if w.size else 0.0, 1e-12)
        worst = max(worst, float(np.abs(w.astype(np.float64) - g).max()) / scale if w.size else 0.0)
    return worst


def open_routes(path: str, options) -> dict:
    """`inspect FILE.pt --input-shape ...`: TS2EP tried on this file at that sample (as a conversion
    would, checked the same way) and the routes that leaves open, per target."""
    from fwconv.convert.planner import applicable_routes, plan_routes, route_label
    from fwconv.convert.reference import prepare_source
    from fwconv.errors import InputError
    from fwconv.models.formats import Source

    ref = prepare_source(Source.sniff(path), options)
    try:
        exported, record = to_exported(ref.torch_source, ref.sample, ref.outputs, options)
    finally:
        ref.close()
    fmt = "exported" if exported is not None else "torchscript"
    routes = {}
    for target in ("tflite", "onnx", "savedmodel", "pte"):
        try:
            routes[target] = [route_label(r) for r in applicable_routes(plan_routes("torch", target), fmt, options)]
        except InputError as exc:
            routes[target] = [f"none: {exc.one_line()}"]
    shapes = ", ".join(f"{name} {list(a.shape)}" for name, a in ref.sample.items())
    return {"ts2ep": {**dataclasses.asdict(record), "sample": shapes}, "open": routes}


def route_lines(probe: dict) -> list[str]:
    """open_routes' answer for people: TS2EP's outcome, then each target's routes in the order tried."""
    record = probe["ts2ep"]
    head = (f"TS2EP ok at {record['sample']} (error/scale {record['max_relative_error']:.2g} against the "
            f"TorchScript module): every .pt2 route is open" if record["status"] == "ok" else
            f"TS2EP {record['status']} at {record['sample']}: {record['detail']}; only the TorchScript road")
    return [head] + [f"{target}: {' | '.join(labels)}" for target, labels in probe["open"].items()]
