"""The format registry: what each model format is called, how its files look, how to sniff it.

Adding a format means adding an entry here and edge modules in convert/edges; nothing else
dispatches on format names.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from typing import Callable

from fwconv.errors import InputError

# "path/to/file.py:build_model" or "package.module:Class"
FACTORY_RE = re.compile(r"^(?P<target>[^:]+\.py|[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)$")


def _zip_names(path: str) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _head(path: str, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _is_torchscript(path: str) -> bool:
    return any("/code/" in n or n.endswith("/constants.pkl") for n in _zip_names(path))


def _is_exported_program(path: str) -> bool:
    return any(n.endswith("/archive_format") or n.endswith("/models/model.json") for n in _zip_names(path))


def _is_torch_pickle(path: str) -> bool:
    return any(n.endswith("/data.pkl") for n in _zip_names(path)) and not _is_torchscript(path)


def _is_onnx(path: str) -> bool:
    # A ModelProto starts with field 1 (ir_version, varint): tag byte 0x08.
    head = _head(path, 2)
    return len(head) == 2 and head[0] == 0x08 and 3 <= head[1] <= 20


def _is_tflite(path: str) -> bool:
    head = _head(path, 8)
    return len(head) == 8 and head[4:8] == b"TFL3"


def _is_pte(path: str) -> bool:
    # An ExecuTorch program is a flatbuffer with file identifier "ET" + two-digit version at offset 4.
    head = _head(path, 8)
    return len(head) == 8 and re.fullmatch(rb"ET\d\d", head[4:8]) is not None


def _is_savedmodel(path: str) -> bool:
    return os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "saved_model.pb"))
        or os.path.exists(os.path.join(path, "saved_model.pbtxt"))
    )


def _is_keras(path: str) -> bool:
    names = _zip_names(path)
    return "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names)


def _is_hf_dir(path: str) -> bool:
    from fwconv.models.hf import is_hf_dir

    return is_hf_dir(path)


def _is_litertlm(path: str) -> bool:
    from fwconv.models.litertlm import is_litertlm

    return is_litertlm(path)


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    is_dir: bool
    sniff: Callable[[str], bool]
    description: str


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


register(Format("torchscript", (".pt", ".pth", ".ptl"), False, _is_torchscript, "TorchScript archive (torch.jit.save)"))
register(Format("exported", (".pt2",), False, _is_exported_program, "ExportedProgram (torch.export.save)"))
register(Format("torch-pickle", (".pt", ".pth", ".bin"), False, _is_torch_pickle, "pickled torch object (torch.save)"))
register(Format("onnx", (".onnx",), False, _is_onnx, "ONNX model"))
register(Format("tflite", (".tflite",), False, _is_tflite, "TFLite / LiteRT flatbuffer"))
register(Format("pte", (".pte",), False, _is_pte, "ExecuTorch program (.pte)"))
register(Format("savedmodel", ("",), True, _is_savedmodel, "TensorFlow SavedModel directory"))
register(Format("keras", (".keras",), False, _is_keras, "Keras 3 model archive"))
register(Format("hf", ("",), True, _is_hf_dir, "Hugging Face model directory (config.json + safetensors)"))
register(Format("litertlm", (".litertlm",), False, _is_litertlm, "LiteRT-LM bundle (.litertlm)"))

# The formats a PyTorch model arrives in (the "torch" family).
TORCH_FORMATS = ("torchscript", "exported", "torch-pickle", "factory")

# What a target's default output is called, next to the source.
TARGET_SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "savedmodel": "_saved_model", "torch": ".pt", "pte": ".pte",
                 "litertlm": ".litertlm"}


@dataclasses.dataclass(frozen=True)
class Source:
    """A model a conversion starts from, sniffed once: its path (or factory) and format."""

    path: str
    format: str

    @classmethod
    def sniff(cls, path: "str | Source") -> "Source":
        return path if isinstance(path, Source) else cls(path, detect_format(path))


def target_format(target: str) -> str:
    """The format a conversion target is written in (a PyTorch target is TorchScript)."""
    return {"torch": "torchscript"}.get(target, target)


def model_file(spec: str) -> str | None:
    """The file behind a model spec: the path itself, or a factory's `.py` file (None for a
    `package.module:attr` factory, which has no file of its own)."""
    if os.path.exists(spec):
        return spec
    match = FACTORY_RE.match(spec)
    return match["target"] if match and match["target"].endswith(".py") else None


def is_factory(spec: str) -> bool:
    return bool(FACTORY_RE.match(spec)) and not os.path.exists(spec)


def detect_format(path: str) -> str:
    """Name the format of a model path by its content; raise InputError with a clear reason.

    The content decides, the suffix only guides the message: a `.onnx` file that is not ONNX
    (truncated, or something else) is an error, never a guess.
    """
    if is_factory(path):
        return "factory"
    if not os.path.exists(path):
        raise InputError(f"model not found: {path}")
    if os.path.isdir(path):
        if _is_savedmodel(path):
            return "savedmodel"
        if _is_hf_dir(path):
            return "hf"
        raise InputError(f"{path} is a directory but not a model fwconv knows (no saved_model.pb, no config.json)")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path} is empty")
    for fmt in FORMATS.values():
        if not fmt.is_dir and fmt.sniff(path):
            return fmt.name
    suffix = os.path.splitext(path)[1].lower()
    expected = [f.description for f in FORMATS.values() if suffix and suffix in f.suffixes]
    what = f"a valid {expected[0]}" if expected else "a model format fwconv knows"
    raise InputError(f"{path} is not {what} (truncated or corrupt?)")
