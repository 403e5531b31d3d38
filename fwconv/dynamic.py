"""Dynamic dimensions: one way to say which input dims vary, the same for every route, command,
the gate and the Python API.

  --dynamic batch[:MIN..MAX]           dim 0 of every input (one label, "batch")
  --dynamic NAME:DIM[=LABEL][:MIN..MAX]  one input's dim; inputs sharing a LABEL share the size

A validator checks an artifact at several sizes inside the bounds (`sizes_to_try`): the smallest,
the example's, one that no common tile size divides, and the largest.
"""

from __future__ import annotations

import dataclasses
import math
import re

from fwconv.errors import InputError
from fwconv.limits import check_declared

DEFAULT_MAX = 16  # the largest size validated when the user gives no bound (export keeps it open)
_BATCH_RE = re.compile(r"^batch(?::(?P<min>\d+)\.\.(?P<max>\d+))?$")
_SPEC_RE = re.compile(r"^(?P<name>.+?):(?P<dim>\d+)(?:=(?P<label>[A-Za-z_][A-Za-z0-9_]*))?"
                      r"(?::(?P<min>\d+)\.\.(?P<max>\d+))?$")


@dataclasses.dataclass(frozen=True)
class DynamicDim:
    input: str | None  # None: every input (`--dynamic batch`)
    dim: int
    label: str
    min: int = 1
    max: int | None = None  # None: unbounded

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DynamicDim":
        return cls(d.get("input"), int(d["dim"]), d["label"], int(d.get("min", 1)), d.get("max"))


def parse_dynamic(texts) -> tuple[DynamicDim, ...]:
    """The user's `--dynamic` words, checked (one clear error per bad one)."""
    found = []
    for text in texts or ():
        if not isinstance(text, str):
            raise InputError(f"bad --dynamic {text!r}: each entry is a string such as 'batch' or 'input_ids:1=seq'")
        m = _BATCH_RE.match(text) or _SPEC_RE.match(text)
        if not m:
            raise InputError(f"bad --dynamic '{text}'", hint="use 'batch[:MIN..MAX]' or NAME:DIM[=LABEL][:MIN..MAX], "
                                                             "e.g. input_ids:1=seq:4..128")
        low, high = (int(m["min"]), int(m["max"])) if m["min"] else (1, None)
        if low < 1 or (high is not None and high < low):
            raise InputError(f"bad --dynamic '{text}': the range must satisfy 1 <= MIN <= MAX")
        if m.re is _BATCH_RE:
            found.append(DynamicDim(None, 0, "batch", low, high))
            continue
        label = m["label"] or f"{m['name']}_{m['dim']}"
        found.append(DynamicDim(m["name"], int(m["dim"]), label, low, high))
    labels: dict[str, tuple[int, int | None]] = {}
    for d in found:
        if labels.setdefault(d.label, (d.min, d.max)) != (d.min, d.max):
            raise InputError(f"--dynamic label '{d.label}' is given two different ranges")
    _refuse_overlaps(found)
    return tuple(found)


def _refuse_overlaps(found: list[DynamicDim]) -> None:
    """One dim named twice (or by `batch` and by NAME:0) would leave one of the words silently
    unused: refused, naming both."""
    seen: dict[tuple, DynamicDim] = {}
    for d in found:
        clash = seen.get((d.input, d.dim))
        if clash is None and d.dim == 0:  # `batch` is dim 0 of every input
            clash = seen.get((None, 0)) if d.input else next((o for (_, i), o in seen.items() if i == 0), None)
        if clash:
            raise InputError(f"--dynamic names dim {d.dim} of {d.input or 'every input'} twice "
                             f"('{clash.label}' and '{d.label}')",
                             hint="'batch' already covers dim 0 of every input" if d.dim == 0 and None in (
                                 d.input, clash.input) else "give each dim once")
        seen[(d.input, d.dim)] = d


def per_input(dims: tuple[DynamicDim, ...], shapes: dict[str, list]) -> dict[str, dict[int, DynamicDim]]:
    """{input: {dim index: DynamicDim}} for these inputs; a name or dim that does not exist is an
    InputError (said before anything converts)."""
    table: dict[str, dict[int, DynamicDim]] = {}
    for d in dims:
        names = list(shapes) if d.input is None else [d.input]
        for name in names:
            if name not in shapes:
                raise InputError(f"--dynamic names input '{name}', which the model does not have "
                                 f"(inputs: {', '.join(shapes)})")
            if not 0 <= d.dim < len(shapes[name]):
                raise InputError(f"--dynamic {name}:{d.dim}: the input has {len(shapes[name])} dims")
            known = table.setdefault(name, {}).get(d.dim)
            table[name][d.dim] = _narrowed(d, known) if known else d
    return _tie_labels(table, shapes)


def _narrowest(a: tuple[int, int | None], b: tuple[int, int | None]) -> tuple[int, int | None]:
    """The range inside both (MIN, MAX) ranges; a MAX of None is unbounded."""
    return max(a[0], b[0]), min((m for m in (a[1], b[1]) if m is not None), default=None)


def _narrowed(asked: DynamicDim, own: DynamicDim) -> DynamicDim:
    """A dim the source keeps variable and the user names too: the user's label, inside both
    ranges (the source's graph holds only for its own range)."""
    low, high = _narrowest((asked.min, asked.max), (own.min, own.max))
    return dataclasses.replace(asked, min=low, max=high)


def _tie_labels(table: dict[str, dict[int, DynamicDim]], shapes: dict[str, list]) -> dict[str, dict[int, DynamicDim]]:
    """Dims sharing a label share one range (the narrowest of theirs) and must share the example's
    size: a label tying a 3 to a 5 is a contradiction, said before anything converts."""
    ranges: dict[str, tuple[int, int | None]] = {}
    sizes: dict[str, tuple[str, int]] = {}
    for name, per in table.items():
        for i, d in per.items():
            ranges[d.label] = _narrowest(ranges.get(d.label, (d.min, d.max)), (d.min, d.max))
            first = sizes.setdefault(d.label, (f"{name}:{i}", shapes[name][i]))
            if first[1] != shapes[name][i]:
                raise InputError(f"--dynamic label '{d.label}' ties {first[0]} (size {first[1]}) to {name}:{i} "
                                 f"(size {shapes[name][i]}), but the example's sizes differ",
                                 hint="give the tied dims the same size in --input-shape, or different labels")
    return {name: {i: dataclasses.replace(d, min=ranges[d.label][0], max=ranges[d.label][1]) for i, d in per.items()}
            for name, per in table.items()}


def check_examples(asked: tuple[DynamicDim, ...], table: dict[str, dict[int, DynamicDim]],
                   shapes: dict[str, list]) -> None:
    """The example's size must lie inside each asked range (the validator tries the example, and
    the exporters trace it): a batch of 8 with `batch:1..4` is refused, naming both."""
    for d in asked:
        for name in (list(table) if d.input is None else [d.input]):
            bound = table.get(name, {}).get(d.dim)
            size = shapes[name][d.dim]
            if bound and not (bound.min <= size and (bound.max is None or size <= bound.max)):
                high = "" if bound.max is None else str(bound.max)
                raise InputError(f"--dynamic {d.label}: the example's size {size} (input '{name}' dim {d.dim}) "
                                 f"is outside {bound.min}..{high}",
                                 hint="give an --input-shape inside the range, or widen the range")


def sizes_to_try(d: DynamicDim, example: int) -> list[int]:
    """Smallest, the example's, an odd size no common tile (2, 3, 4, 8) divides, and the largest."""
    upper = d.max if d.max is not None else max(DEFAULT_MAX, 2 * example)
    odd = next((n for n in range(example + 1, upper + 1) if n % 2 and n % 3), None)
    odd = odd or next((n for n in range(example - 1, d.min - 1, -1) if n % 2 and n % 3), example)
    return sorted({d.min, example, odd, upper})


def shape_sets(dims: tuple[DynamicDim, ...], shapes: dict[str, list]) -> list[dict[str, list[int]]]:
    """Input shapes to validate at, one set per size step, tied dims (same label) moving together;
    the example's own shapes are left out (the ordinary validation covers them)."""
    table = per_input(dims, shapes)
    labels = {d.label: d for dims_of in table.values() for d in dims_of.values()}
    examples = {d.label: shapes[name][i] for name, dims_of in table.items() for i, d in dims_of.items()}
    steps = {label: sizes_to_try(d, examples[label]) for label, d in labels.items()}
    count = max((len(s) for s in steps.values()), default=0)
    sets = []
    for k in range(count):
        size = {label: s[min(k, len(s) - 1)] for label, s in steps.items()}
        new = {name: [size[table[name][i].label] if i in table.get(name, {}) else v for i, v in enumerate(shape)]
               for name, shape in shapes.items()}
        for name, shape in new.items():  # a huge MAX is an allocation like a huge --input-shape: capped
            check_declared(f"--dynamic: input '{name}' at {shape}", math.prod(shape) * 8)
        if new != shapes:
            sets.append(new)
    return sets


def of_exported_program(ep, names: list[str]) -> tuple[DynamicDim, ...]:
    """The dims a .pt2 was exported dynamic with (torch.export.Dim): each user input's symbolic
    sizes, with the exporter's range (a symbol shared by inputs is one label)."""
    found = []
    user_inputs = [n for n in ep.graph.nodes if n.op == "placeholder"][-len(names):] if names else []
    for name, node in zip(names, user_inputs):
        value = node.meta.get("val")
        for i, size in enumerate(getattr(value, "shape", ())):
            if isinstance(size, int):
                continue
            symbol = size.node.expr
            bounds = ep.range_constraints.get(symbol)
            low = int(bounds.lower) if bounds is not None else 1
            high = int(bounds.upper) if bounds is not None and str(bounds.upper) not in ("oo", "int_oo") else None
            found.append(DynamicDim(name, i, str(symbol), max(low, 1), high))
    return tuple(found)


def of_onnx_inputs(specs, dim_params: dict[str, list[str | None]]) -> tuple[DynamicDim, ...]:
    """An ONNX model's symbolic input dims (dim_param, or no value at all), kept dynamic."""
    found = []
    for spec in specs:
        for i, size in enumerate(spec.shape):
            if size is None:
                params = dim_params.get(spec.name, [])
                label = params[i] if i < len(params) and params[i] else f"{spec.name}_{i}"
                found.append(DynamicDim(spec.name, i, label))
    return tuple(found)


def torch_dynamic_shapes(table: dict[str, dict[int, DynamicDim]], names: list[str]):
    """torch.export's `dynamic_shapes` for positional inputs: one torch.export.Dim per label."""
    import torch

    dims = {}
    for per in table.values():
        for d in per.values():
            if d.label not in dims:
                kwargs = {"min": d.min}
                if d.max is not None:
                    kwargs["max"] = d.max
                dims[d.label] = torch.export.Dim(d.label, **kwargs)
    return tuple({i: dims[d.label] for i, d in table.get(name, {}).items()} or None for name in names)


def export_sample(sample: dict, table: dict[str, dict[int, DynamicDim]]) -> dict:
    """The sample for torch.export: a dynamic dim of size 1 is repeated to 2 first, because
    torch.export specialises a size-1 dimension (it would come out static)."""
    import numpy as np

    out = {}
    for name, a in sample.items():
        for i, d in sorted(table.get(name, {}).items()):
            if a.shape[i] == 1 and (d.max is None or d.max >= 2):
                a = np.repeat(a, 2, axis=i)
        out[name] = np.ascontiguousarray(a)
    return out


def bounded(table: dict[str, dict[int, DynamicDim]], shapes: dict[str, list], default_max: int):
    """The table with every open MAX closed at `default_max` (or the example's size, if larger),
    for runtimes that plan memory at the upper bound (ExecuTorch). Returns (table, the labels closed)."""
    closed: dict[str, int] = {}
    for name, per in table.items():
        for i, d in per.items():
            if d.max is None:
                closed[d.label] = max(closed.get(d.label, 0), default_max, shapes[name][i])
    new = {name: {i: dataclasses.replace(d, max=closed.get(d.label, d.max)) for i, d in per.items()}
           for name, per in table.items()}
    return new, closed


def check_declared_bounds(dims: tuple[DynamicDim, ...], specs) -> None:
    """The option check, before the model is even loaded: each declared MAX put into the
    --input-shape it applies to (every input for `batch`, the named one, or the only one) must
    stay under the allocation cap, as a huge --input-shape must."""
    for d in dims:
        if d.max is None:
            continue
        named = [s for s in specs if d.input is None or s.name == d.input] or (list(specs) if len(specs) == 1 else [])
        for spec in named:
            if d.dim < len(spec.shape) and all(isinstance(n, int) for n in spec.shape):
                shape = [d.max if i == d.dim else n for i, n in enumerate(spec.shape)]
                check_declared(f"--dynamic {d.label}:{d.min}..{d.max}: input '{spec.name}' at {shape}",
                               math.prod(shape) * 8)


def check_sizes(table: dict[str, dict[int, DynamicDim]], shapes: dict[str, list]) -> None:
    """Every size the validator will try, checked against the allocation cap before anything
    converts (a huge MAX is refused up front, like a huge --input-shape)."""
    shape_sets(tuple({d for per in table.values() for d in per.values()}), shapes)


def tf_signature_dims(specs) -> tuple[DynamicDim, ...]:
    """A TensorFlow/Keras source's own open dims (None in its signature), other than dim 0: Keras
    leaves the batch open on every model, so it stays fixed unless `--dynamic` asks for it; a
    sequence length or image side left open is the model's own promise."""
    found = []
    for spec in specs:
        found += [DynamicDim(spec.name, i, f"{spec.name}_{i}") for i, size in enumerate(spec.shape) if size is None and i]
    return tuple(found)
