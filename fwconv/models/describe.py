"""Describe any model file for the app developer: format, size, sha256, signatures, each
input/output (name, shape, dtype, layout, quantization), ops. fwconv-made or not: what the file
itself says comes first; a fwconv manifest beside it adds route, tools and layouts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fwconv.models.formats import TORCH_FORMATS, detect_format
from fwconv.manifest import read_manifest, sha256_of, size_of
from fwconv.specs import TensorSpec, normalize_dtype


def _tflite(path: str) -> dict[str, Any]:
    from fwconv.models.tflite import dynamic_dims, op_summary, read_io

    info: dict[str, Any] = {"ops": op_summary(path)}
    try:
        io = read_io(path)
        info.update({k: io[k] for k in ("signatures", "inputs", "outputs")})
        info["dynamic"] = {name: [f"dim {i}" for i in dims] for name, dims in dynamic_dims(path).items()}
    except Exception as exc:  # e.g. Flex ops: the op list still tells what is inside
        info["load_error"] = str(exc).splitlines()[0]
    return info


def _onnx(path: str) -> dict[str, Any]:
    from fwconv.models.onnx import io_specs, load_onnx

    model = load_onnx(path, check=False)
    inputs, outputs = io_specs(model)
    symbolic = {v.name: [f"dim {i} ({d.dim_param or '?'})" for i, d in enumerate(v.type.tensor_type.shape.dim)
                         if not d.HasField("dim_value")] for v in list(model.graph.input) + list(model.graph.output)}
    ops = Counter(n.op_type for n in model.graph.node)
    return {"inputs": inputs, "outputs": outputs, "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "ops": {"total": sum(ops.values()), "by_type": dict(sorted(ops.items()))},
            "dynamic": {name: dims for name, dims in symbolic.items() if dims}}


def _pte(path: str) -> dict[str, Any]:
    """Methods, forward's I/O (the source's names when fwconv wrote it), delegate calls by backend
    and the kernels the runtime must provide (operators outside any delegate)."""
    from fwconv.models.executorch import program_contents, read_io

    io = read_io(path)
    contents = program_contents(path)
    bounds = {s.name: [f"dim {i} (up to {cap[i]})" for i, d in enumerate(s.shape) if d is None]
              for s, cap in zip(io["inputs"], io["capacity"]) if cap}  # bounded: the program allocates the MAX
    bounds = {name: dims for name, dims in bounds.items() if dims}
    return {"methods": io["methods"], "inputs": io["inputs"], "outputs": io["outputs"],
            "ops": contents.get("forward", {}), "method_ops": contents,
            **({"dynamic": bounds} if bounds else {}),
            **({} if io["named_by"] == "fwconv" else {"note": "a .pte has no tensor names: inputs/outputs by position"})}


def _savedmodel(path: str) -> dict[str, Any]:
    from fwconv.models.savedmodel import read_signatures

    return read_signatures(path)


def _torch(path: str, trust_pickle: bool) -> dict[str, Any]:
    from fwconv.errors import InputError
    from fwconv.models.torch_source import load_torch_source

    source = load_torch_source(path, trust_pickle=trust_pickle)
    info: dict[str, Any] = {"kind": source.kind}
    try:
        info["inputs"] = source.input_specs()
    except InputError:
        info["inputs"] = [TensorSpec(n, [], "?") for n in source.input_names]
        info["note"] = "input shapes are not recorded in this file"
    return info


def _keras(path: str, trust_pickle: bool) -> dict[str, Any]:
    from fwconv.models.keras import load_keras

    model = load_keras(path, trust=trust_pickle)
    spec = lambda name, t: TensorSpec(name, list(t.shape), normalize_dtype(str(t.dtype)))
    return {"inputs": [spec(t.name, t) for t in model.inputs],
            "outputs": [spec(n, t) for n, t in zip(model.output_names, model.outputs)]}


def describe(path: str, *, trust_pickle: bool = False) -> dict[str, Any]:
    fmt = detect_format(path)
    reader = {"tflite": _tflite, "onnx": _onnx, "savedmodel": _savedmodel, "pte": _pte,
              "keras": lambda p: _keras(p, trust_pickle)}.get(fmt)
    info = reader(path) if reader else (_torch(path, trust_pickle) if fmt in TORCH_FORMATS else {})
    manifest = read_manifest(path) if fmt != "factory" else None
    if manifest is not None:  # layouts (and shapes TorchScript does not record) come from the manifest
        known = {s.name: s for s in manifest.inputs + manifest.outputs}
        for spec in info.get("inputs", []) + info.get("outputs", []):
            recorded = known.get(spec.name)
            if recorded is not None:
                spec.layout = spec.layout or recorded.layout
                if spec.dtype == "?":
                    spec.shape, spec.dtype = recorded.shape, recorded.dtype
        if info.get("note") and all(s.dtype != "?" for s in info.get("inputs", [])):
            info["note"] = "input shapes from the fwconv manifest (TorchScript does not record them)"
        if fmt in ("torchscript", "exported") and not info.get("outputs"):
            info["outputs"] = list(manifest.outputs)
        if fmt == "pte" and "delegated" in (manifest.ops or {}):  # recorded at conversion: per edge operator
            info["ops"] = {**manifest.ops, **info.get("ops", {})}
    out = {"path": path, "format": fmt}
    if fmt != "factory":
        out.update({"size_bytes": size_of(path), "sha256": sha256_of(path)})
    out.update({k: ([s.to_dict() for s in v] if k in ("inputs", "outputs") else v) for k, v in info.items()})
    if manifest is not None:
        out["fwconv"] = {"route": manifest.route, "tools": manifest.tools, "source": manifest.source,
                         "interface": manifest.extra.get("interface"), "validation": manifest.validation,
                         "notes": manifest.notes, "dynamic": manifest.extra.get("dynamic")}
    return out


def to_text(info: dict[str, Any]) -> str:
    lines = [f"{info['path']}: {info['format']}" + (f", {info['size_bytes'] / 1024:.1f} KiB" if "size_bytes" in info else "")]
    if info.get("sha256"):
        lines.append(f"  sha256: {info['sha256']}")
    if info.get("methods"):
        lines.append(f"  methods: {', '.join(info['methods'])}")
    if info.get("signatures"):
        lines.append(f"  signatures: {', '.join(info['signatures'])}")
    for side in ("inputs", "outputs"):
        for t in info.get(side, []):
            quant = t.get("quantization")
            q = f"  scale={quant['scale']:.6g} zero_point={quant['zero_point']}" if quant else ""
            lines.append(f"  {side[:-1]:6} {t['name']}: {t['dtype']}{t['shape']}" + (f" {t['layout']}" if t.get("layout") else "") + q)
    if info.get("dynamic"):
        lines.append("  dynamic: " + "; ".join(f"{name} {', '.join(dims)}" for name, dims in info["dynamic"].items()))
    ops = info.get("ops")
    if ops and "builtin" in ops:
        lines.append(f"  ops: {ops['total']} ({', '.join(f'{k}×{v}' for k, v in ops['builtin'].items())})")
        lines.append(f"  flex: {', '.join(ops['flex']) or 'none'}; custom: {', '.join(ops['custom']) or 'none'}")
        if ops.get("tensor_types"):
            lines.append(f"  tensor types: {', '.join(f'{k}×{v}' for k, v in ops['tensor_types'].items())}")
    elif ops and "kernels" in ops:
        from fwconv.models.executorch import delegation_line

        lines.append(f"  ops: {delegation_line(ops)}")
    elif ops:
        lines.append(f"  ops: {ops['total']} ({', '.join(f'{k}×{v}' for k, v in ops['by_type'].items())})")
    if info.get("opset"):
        lines.append(f"  opset: {info['opset']}")
    for key in ("load_error", "note"):
        if info.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {info[key]}")
    if "fwconv" in info:
        f = info["fwconv"]
        lines.append(f"  made by fwconv: {' -> '.join(f['route'])}; validation: {(f['validation'] or {}).get('status', 'none')}")
        if f.get("dynamic"):  # the range fwconv validated (TFLite and ONNX record no bounds themselves)
            lines.append("  validated range: " + "; ".join(
                f"{d['input']} dim {d['dim']} ({d['label']}) {d['min']}..{d['max'] if d['max'] is not None else ''}"
                for d in f["dynamic"]))
    return "\n".join(lines)
