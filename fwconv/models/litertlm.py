"""A LiteRT-LM bundle (`.litertlm`): its sections read from the header (litert-lm-builder's
schema), so the model inside can be checked by the plain LiteRT interpreter too. Reading only:
offsets are checked against the file before anything is copied."""

from __future__ import annotations

import io
import os

from fwconv.errors import InputError, require

MAGIC = b"LITERTLM"


def is_litertlm(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == MAGIC
    except OSError:
        return False


def sections(path: str) -> list[dict]:
    """Every section: its data type name, byte range and items."""
    peek = require("litert_lm_builder.litertlm_peek", "llm")
    core = require("litert_lm_builder.litertlm_core", "llm")
    try:
        metadata = peek.read_litertlm_header(path, io.StringIO())
    except Exception as exc:
        raise InputError(f"{path} is not a readable LiteRT-LM bundle: {exc}") from None
    size, found = os.path.getsize(path), []
    table = metadata.SectionMetadata()
    for i in range(table.ObjectsLength() if table else 0):
        obj = table.Objects(i)
        begin, end = obj.BeginOffset(), obj.EndOffset()
        if not 0 <= begin <= end <= size:
            raise InputError(f"{path}: section {i} points outside the file (truncated or crafted)")
        items = {peek.kvp_to_dict(obj.Items(j))["key"]: peek.kvp_to_dict(obj.Items(j)).get("value")
                 for j in range(obj.ItemsLength())}
        found.append({"index": i, "type": core.any_section_data_type_to_string(obj.DataType()), "begin": begin,
                      "end": end, "items": items})
    return found


def extract_tflite(path: str, out_dir: str) -> str:
    """Copy the bundle's prefill/decode model (its first TFLite section) to `out_dir`; its path."""
    models = [s for s in sections(path) if s["type"] == "TFLiteModel"]
    if not models:
        raise InputError(f"{path} holds no TFLite model section")
    chosen = next((s for s in models if "prefill" in str(s["items"]).lower() or "decode" in str(s["items"]).lower()),
                  models[0])
    target = os.path.join(out_dir, "bundled_model.tflite")
    with open(path, "rb") as src, open(target, "wb") as dst:
        src.seek(chosen["begin"])
        dst.write(src.read(chosen["end"] - chosen["begin"]))
    return target


def bundled_tokenizer_json(path: str) -> str | None:
    """The HF tokenizer.json the bundle carries (an 8-byte length, then zlib), or None."""
    import struct
    import zlib

    found = [s for s in sections(path) if s["type"] == "HF_Tokenizer_Zlib"]
    if not found:
        return None
    with open(path, "rb") as f:
        f.seek(found[0]["begin"])
        data = f.read(found[0]["end"] - found[0]["begin"])
    (length,) = struct.unpack("<Q", data[:8])
    text = zlib.decompressobj().decompress(data[8:], length + 1)
    if len(text) != length:
        raise InputError(f"{path}: the bundled tokenizer is not {length} bytes as declared")
    return text.decode("utf-8")
