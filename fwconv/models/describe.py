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
            "dynamic": {name: dims for name, dims in symbolic.items() if dims},
            **_onnx_generator([s.name for s in inputs], [s.name for s in outputs])}


def _onnx_generator(inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    """An ONNX decoder with past key/values (Optimum's naming): its layers and cache names."""
    past = [n for n in inputs if n.startswith("past_key_values.")]
    if "input_ids" not in inputs or not past:
        return {}
    return {"generator": {"kind": "ONNX decoder with past key/values", "layers": len(past) // 2,
                          "feeds": [n for n in inputs if not n.startswith("past_key_values.")],
                          "cache": "past_key_values.{i}.key|value in, present.{i}.key|value out"}}


def _pte_generator(path: str, methods: list[str]) -> dict[str, Any]:
    """An ExecuTorch LLM-runner program (use_kv_cache): the constant methods the runner reads."""
    if "use_kv_cache" not in methods:
        return {}
    from fwconv.models.executorch import open_program, runner_constants

    return {"generator": {"kind": "ExecuTorch LLM runner program (KV cache in the program)",
                          **runner_constants(open_program(path), path)}}


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
            **({"dynamic": bounds} if bounds else {}), **_pte_generator(path, io["methods"]),
            **({} if io["named_by"] == "fwconv" else {"note": "a .pte has no tensor names: inputs/outputs by position"})}


def _savedmodel(path: str) -> dict[str, Any]:
    from fwconv.models.savedmodel import read_signatures

    return read_signatures(path)


def _torch(path: str, trust_pickle: bool) -> dict[str, Any]:
    from fwconv.errors import InputError
    from fwconv.models.torch_source import load_torch_source

    source = load_torch_source(path, trust_pickle=trust_pickle)
    info: dict[str, Any] = {"kind": source.kind}
    if source.kind == "torchscript":  # what a conversion will try (convert/ts2ep.py), in order
        info["routes"] = ["TS2EP -> ExportedProgram, then every .pt2 route: litert-torch (tflite), dynamo ONNX "
                          "exporter (onnx, tflite/savedmodel via ONNX), ExecuTorch (pte); checked on the sample",
                          "if TS2EP fails or differs: the TorchScript ONNX exporter (onnx, "
                          "tflite/savedmodel via onnx2tf); no litert-torch, no pte",
                          "(inspect FILE --input-shape ... tries TS2EP on this file and lists the routes open)"]
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


def _generative_tflite(path: str) -> dict[str, Any]:
    """A litert-torch generative model: the prefill/decode contract an app drives."""
    from fwconv.models.tflite import generative_contract, op_summary, signature_io

    signatures = signature_io(path)
    return {"signatures": list(signatures), "signature_io": signatures, "generative": generative_contract(signatures),
            "ops": op_summary(path)}


def _litertlm(path: str) -> dict[str, Any]:
    """A LiteRT-LM bundle: its sections, and the contract of the model inside."""
    from fwconv.models.litertlm import bundled_tflite, sections

    info: dict[str, Any] = {"sections": [{"type": s["type"], "bytes": s["end"] - s["begin"]} for s in sections(path)]}
    with bundled_tflite(path) as model:
        info.update(_generative_tflite(model))
    return info


def _hf(path: str) -> dict[str, Any]:
    """A model directory, from its declarations only (nothing loads): what it is and where it can go."""
    from fwconv.models.hf import read_hf_dir

    d = read_hf_dir(path, trust_pickle=True)  # reading names and sizes only; loading still needs the flag
    return {"model_type": d.model_type, "architectures": d.architectures, "causal_lm": d.is_causal_lm,
            "context_length": d.context_length, "weights_bytes": d.weight_bytes,
            "weights": [w.rsplit("/", 1)[-1] for w in d.weights], "tokenizer": d.tokenizer and d.tokenizer.rsplit("/", 1)[-1],
            "tokens": d.token_ids(), "routes": ["tflite (prefill/decode, litert-torch)", "litertlm (LiteRT-LM bundle)",
                                        "pte (ExecuTorch, static KV cache)", "onnx (past key/values)"]
            if d.is_causal_lm else []}


def _is_generative_tflite(path: str) -> bool:
    from fwconv.models.tflite import open_interpreter

    names = open_interpreter(path, 1).get_signature_list()
    return "decode" in names and any(n.startswith("prefill_") for n in names)


def describe(path: str, *, trust_pickle: bool = False) -> dict[str, Any]:
    fmt = detect_format(path)
    reader = {"tflite": _tflite, "onnx": _onnx, "savedmodel": _savedmodel, "pte": _pte, "hf": _hf,
              "litertlm": _litertlm, "keras": lambda p: _keras(p, trust_pickle)}.get(fmt)
    if fmt == "tflite" and _is_generative_tflite(path):
        reader = _generative_tflite
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
                         "notes": manifest.notes, "dynamic": manifest.extra.get("dynamic"),
                         "generative": manifest.extra.get("generative")}
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
    lines += _generative_lines(info)
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
    for i, route in enumerate(info.get("routes") or [] if info.get("format") != "hf" else []):
        lines.append(f"  {'routes:' if i == 0 else '       '} {route}")
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


def _generative_lines(info: dict[str, Any]) -> list[str]:
    """A language model's contract (artifact) or what a model directory is (source)."""
    lines = []
    if info.get("format") == "hf":
        lines.append(f"  {info['model_type']} ({', '.join(info['architectures']) or 'no architectures'}), "
                     f"context {info['context_length']}, weights {info['weights_bytes'] / 2**20:.1f} MiB "
                     f"({', '.join(info['weights'])}), tokenizer: {info['tokenizer'] or 'none'}")
        lines.append(f"  converts to: {', '.join(info['routes']) or 'nothing (not a causal language model)'}")
    for s in info.get("sections", []):
        lines.append(f"  section {s['type']}: {s['bytes']} bytes")
    if info.get("generator"):
        fields = {k: v for k, v in info["generator"].items() if k != "kind"}
        lines.append(f"  generator: {info['generator']['kind']}; " + ", ".join(f"{k} {v}" for k, v in fields.items()))
    g = info.get("generative")
    if g:
        lines.append(f"  generative: prefill {g['prefill_lengths']}, decode; cache length {g['cache_length']}, "
                     f"{g['layers']} layers (kv_cache_k_i / kv_cache_v_i in and out), vocab {g['vocab']}, "
                     f"prefill logits: {'yes' if g['prefill_returns_logits'] else 'no'}")
        for name, io in info.get("signature_io", {}).items():
            for side in ("inputs", "outputs"):
                shown = [f"{d['name']} {d['dtype']}{d['shape']}" for d in io[side] if not d["name"].startswith("kv_cache_")]
                cache = " + kv cache" if len(shown) < len(io[side]) else ""
                lines.append(f"    {name} {side}: {', '.join(shown) or 'the kv cache only'}" + (cache if shown else ""))
    return lines
