"""Read the ops of a `.tflite` straight from its flatbuffer (no TensorFlow, no interpreter).

Select-TF ops are custom ops whose names start with 'Flex'; the plain LiteRT interpreter
cannot run them. Reading the file works even when the interpreter refuses the model.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fwconv.errors import InputError, first_line, require


def op_summary(path: str) -> dict[str, Any]:
    fb = require("ai_edge_litert.schema_py_generated", "tflite")
    with open(path, "rb") as f:
        buf = f.read()
    try:
        model = fb.Model.GetRootAs(buf, 0)
        names = {v: k for k, v in vars(fb.BuiltinOperator).items() if isinstance(v, int)}
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            if code == fb.BuiltinOperator.CUSTOM:
                codes.append(("custom", (oc.CustomCode() or b"?").decode()))
            else:
                codes.append(("builtin", names.get(code, f"BUILTIN_{code}")))
        type_names = {v: k for k, v in vars(fb.TensorType).items() if isinstance(v, int)}
        counts: Counter = Counter()
        tensor_types: Counter = Counter()
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            for o in range(sg.OperatorsLength()):
                counts[codes[sg.Operators(o).OpcodeIndex()]] += 1
            for t in range(sg.TensorsLength()):
                tensor_types[type_names.get(sg.Tensors(t).Type(), "?")] += 1
    except Exception as exc:  # a broken flatbuffer raises anything from struct.error to IndexError
        raise InputError(f"{path} is not a readable TFLite model: {first_line(exc)}") from exc
    builtin = {name: n for (kind, name), n in sorted(counts.items()) if kind == "builtin"}
    custom = {name: n for (kind, name), n in sorted(counts.items()) if kind == "custom"}
    return {
        "total": sum(counts.values()),
        "builtin": builtin,
        "flex": sorted(n for n in custom if n.startswith("Flex")),
        "custom": sorted(n for n in custom if not n.startswith("Flex")),
        "custom_counts": custom,
        "tensor_types": dict(sorted(tensor_types.items())),  # e.g. INT8 tensors show quantization
    }


def set_io_order(path: str, inputs: list[str], outputs: list[str], signature: str = "serving_default") -> None:
    """Make the subgraph's input and output tensors (what index-based Android/iOS code uses) and
    the signature's lists follow the source's order (`inputs`/`outputs`: signature keys).

    TF's converter may list a function's outputs in any order: the signature keys stay right,
    the tensor order does not. The flatbuffer is rewritten in place (object API, then packed).
    Names that do not match the signature leave that side as the converter wrote it.
    """
    fb = require("ai_edge_litert.schema_py_generated", "tflite")
    flatbuffers = require("flatbuffers", "tflite")
    with open(path, "rb") as f:
        model = fb.ModelT.InitFromPackedBuf(f.read(), 0)
    sig = next((s for s in model.signatureDefs or [] if (s.signatureKey or b"").decode() == signature), None)
    if sig is None:
        return
    graph = model.subgraphs[sig.subgraphIndex]
    for side, names in (("inputs", inputs), ("outputs", outputs)):
        by_name = {t.name.decode(): t for t in getattr(sig, side)}
        if sorted(by_name) == sorted(names):
            setattr(sig, side, [by_name[n] for n in names])
            setattr(graph, side, [t.tensorIndex for t in getattr(sig, side)])
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with open(path, "wb") as f:
        f.write(builder.Output())


def open_interpreter(path: str, threads: int | None = None, *, keep_intermediates: bool = False):
    """A LiteRT interpreter with tensors allocated; a Flex model is exit 5 naming its ops, an
    unreadable file exit 2. `keep_intermediates` keeps every op's output readable after invoke
    (for the layerwise debugger; it costs memory and turns off in-place buffer reuse)."""
    import warnings

    litert = require("ai_edge_litert.interpreter", "tflite")
    from fwconv.errors import UnsupportedOpError, load_error
    from fwconv.quiet import captured_output

    try:
        with captured_output(), warnings.catch_warnings():  # "Created TensorFlow Lite XNNPACK delegate"...
            warnings.simplefilter("ignore")  # preserve_all_tensors warns that it is for debugging: it is
            extra = {}
            if keep_intermediates:  # XNNPACK fuses ops into one DELEGATE node: run each op itself
                extra = dict(experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            interpreter = litert.Interpreter(model_path=path, num_threads=threads or 1, **extra)
            interpreter.allocate_tensors()
        return interpreter
    except Exception as exc:
        if "Select TensorFlow op" in str(exc) or "Flex" in str(exc):
            raise UnsupportedOpError(op_summary(path)["flex"] or ["(unknown)"], stage="load",
                                     hint="plain LiteRT cannot run Select-TF (Flex) ops") from exc
        raise load_error("LiteRT", path, exc) from exc


def signature_of(interpreter, key: str | None = None) -> dict | None:
    """{"inputs": {name: tensor index}, "outputs": {...}} of the named (or only) signature."""
    sigs = interpreter._get_full_signature_list()
    if key or len(sigs) == 1:
        return sigs[key or next(iter(sigs))]
    return None


def io_details(interpreter, signature: dict | None, side: str) -> list[tuple[str, dict]]:
    """(name, tensor detail) per input/output: signature keys and order where there is one."""
    details = interpreter.get_input_details() if side == "input" else interpreter.get_output_details()
    if signature is None:
        return [(d["name"], d) for d in details]
    by_index = {d["index"]: d for d in details}
    return [(name, by_index[index]) for name, index in signature["inputs" if side == "input" else "outputs"].items()]


def tensor_specs(interpreter, signature: dict | None, side: str) -> list:
    """The real I/O tensors: dtype as stored, with scale/zero-point where quantized."""
    import numpy as np

    from fwconv.specs import TensorSpec

    specs = []
    for name, d in io_details(interpreter, signature, side):
        scale, zero = d.get("quantization", (0.0, 0))
        quant = {"scale": float(scale), "zero_point": int(zero)} if scale else {}
        # a -1 in shape_signature is a dynamic dim (the allocated shape holds a placeholder size)
        shape = [None if int(s) == -1 else int(x) for x, s in zip(d["shape"], d.get("shape_signature", d["shape"]))]
        specs.append(TensorSpec(name, shape, np.dtype(d["dtype"]).name, quantization=quant))
    return specs


def read_io(path: str) -> dict[str, Any]:
    """What a .tflite declares: signatures, I/O specs, and each signature key's raw tensor name."""
    interpreter = open_interpreter(path)
    signature = signature_of(interpreter)
    raw = {d["index"]: d["name"] for d in interpreter.get_input_details() + interpreter.get_output_details()}
    tensor_names = {key: raw[i] for side in ("inputs", "outputs") for key, i in (signature or {}).get(side, {}).items()}
    return {"signatures": list(interpreter.get_signature_list()), "tensor_names": tensor_names,
            "inputs": tensor_specs(interpreter, signature, "input"),
            "outputs": tensor_specs(interpreter, signature, "output")}


def dynamic_dims(path: str) -> dict[str, list[int]]:
    """{I/O name: dims stored as -1 in the tensor's shape_signature}: what an app may resize."""
    interpreter = open_interpreter(path)
    signature = signature_of(interpreter)
    found = {}
    for side in ("input", "output"):
        for name, d in io_details(interpreter, signature, side):
            dims = [i for i, v in enumerate(d.get("shape_signature", d["shape"])) if v == -1]
            if dims:
                found[name] = dims
    return found


def signature_io(path: str) -> dict[str, dict]:
    """Each signature's inputs and outputs (name, shape, dtype) as the interpreter reports them."""
    interpreter = open_interpreter(path, 1)
    found = {}
    for name in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(name)
        found[name] = {side: [{"name": k, "shape": [int(d) for d in v["shape"]], "dtype": v["dtype"].__name__}
                              for k, v in sorted(details.items())]
                       for side, details in (("inputs", runner.get_input_details()),
                                             ("outputs", runner.get_output_details()))}
    return found


def generative_contract(signatures: dict[str, dict]) -> dict | None:
    """A generative model's shape (litert-torch's convention), or None: prefill lengths, cache
    length, layers, whether prefill returns logits."""
    prefill = sorted(int(n.split("_")[1]) for n in signatures if n.startswith("prefill_") and n.split("_")[1].isdigit())
    decode = signatures.get("decode")
    if not prefill or decode is None:
        return None
    inputs = {d["name"]: d for d in decode["inputs"]}
    return {"prefill_lengths": prefill, "cache_length": inputs["mask"]["shape"][-1] if "mask" in inputs else None,
            "layers": sum(1 for n in inputs if n.startswith("kv_cache_k_")),
            "vocab": next((d["shape"][-1] for d in decode["outputs"] if d["name"] == "logits"), None),
            "prefill_returns_logits": any(d["name"] == "logits" for n, s in signatures.items() if n.startswith("prefill")
                                          for d in s["outputs"])}
