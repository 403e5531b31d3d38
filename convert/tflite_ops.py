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
