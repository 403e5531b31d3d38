"""A LiteRT-LM bundle (`.litertlm`): its sections read from the header (litert-lm-builder's
schema), so the model inside can be checked by the plain LiteRT interpreter too. Reading only:
offsets are checked against the file before anything is copied."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import zlib
from typing import Iterator

from fwconv.errors import FwconvError, InputError, require

MAGIC = b"LITERTLM"
TOKENIZER_MAX = 64 * 1024 * 1024  # a declared tokenizer.json larger than this is not a tokenizer


def is_litertlm(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == MAGIC
    except OSError:
        return False


def sections(path: str) -> list[dict]:
    """Every section: its data type name, byte range and items. A truncated or crafted header is
    bad input (exit 2), whichever accessor trips on it."""
    peek = require("litert_lm_builder.litertlm_peek", "llm")
    core = require("litert_lm_builder.litertlm_core", "llm")
    try:
        metadata = peek.read_litertlm_header(path, io.StringIO())
        return _section_table(path, metadata, peek, core)
    except InputError:
        raise
    except Exception as exc:  # the flatbuffer accessors read lazily: struct.error, IndexError...
        reason = str(exc).strip() or type(exc).__name__
        raise InputError(f"{path} is not a readable LiteRT-LM bundle ({reason}: truncated or corrupt)") from None


def _section_table(path: str, metadata, peek, core) -> list[dict]:
    size, found = os.path.getsize(path), []
    table = metadata.SectionMetadata()
    for i in range(table.ObjectsLength() if table else 0):
        obj = table.Objects(i)
        begin, end = obj.BeginOffset(), obj.EndOffset()
        if not 0 <= begin <= end <= size:
            raise InputError(f"{path}: section {i} points outside the file (truncated or crafted)")
        pairs = [peek.kvp_to_dict(obj.Items(j)) for j in range(obj.ItemsLength())]
        found.append({"index": i, "type": core.any_section_data_type_to_string(obj.DataType()), "begin": begin,
                      "end": end, "items": {p["key"]: p.get("value") for p in pairs}})
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


@contextlib.contextmanager
def bundled_tflite(path: str) -> Iterator[str]:
    """The bundle's model as a temporary .tflite; an error about it names the bundle the user
    gave, not the temporary copy."""
    with tempfile.TemporaryDirectory(prefix="fwconv-bundle-") as work:
        copy = extract_tflite(path, work)
        try:
            yield copy
        except FwconvError as exc:
            exc.args = tuple(a.replace(copy, f"the model inside {path}") if isinstance(a, str) else a
                             for a in exc.args)
            raise


def bundled_tokenizer_json(path: str) -> str | None:
    """The HF tokenizer.json the bundle carries (an 8-byte length, then zlib), or None; a length
    or stream that does not hold up is bad input."""
    found = [s for s in sections(path) if s["type"] == "HF_Tokenizer_Zlib"]
    if not found:
        return None
    with open(path, "rb") as f:
        f.seek(found[0]["begin"])
        data = f.read(found[0]["end"] - found[0]["begin"])
    if len(data) < 8:
        raise InputError(f"{path}: the bundled tokenizer section is truncated")
    (length,) = struct.unpack("<Q", data[:8])
    if length > TOKENIZER_MAX:
        raise InputError(f"{path}: the bundled tokenizer declares {length} bytes (crafted or corrupt)")
    try:
        text = zlib.decompressobj().decompress(data[8:], length + 1).decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: the bundled tokenizer is not readable ({exc})") from None
    if len(text.encode("utf-8")) != length:
        raise InputError(f"{path}: the bundled tokenizer is not {length} bytes as declared")
    return text
