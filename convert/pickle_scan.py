"""Static check of the pickle streams inside a PyTorch archive, before anything loads it.

torch.jit.load, torch.export.load and torch.load(weights_only=False) all unpickle parts of
the file, and a pickle can name any Python callable. We read every pickle opcode without
executing it and allow only the globals that rebuild tensors and TorchScript objects; a
pickled nn.Module (or anything else that imports code) is refused unless the user trusts it.
"""

from __future__ import annotations

import pickletools
import zipfile

_ALLOWED_MODULE_PREFIXES = ("__torch__",)  # TorchScript classes: resolved by the TorchScript unpickler
_ALLOWED = {
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "slice", "complex", "tuple", "list", "dict", "int", "float", "bool", "str", "bytes"},
    "torch._utils": {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                     "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
                     "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage",
                     "_rebuild_wrapper_subclass", "_rebuild_nested_tensor"},
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch.jit._pickle": {"build_intlist", "build_tensorlist", "build_doublelist", "build_boollist",
                          "build_tensor_from_id", "restore_type_tag"},
    "torch.storage": {"UntypedStorage", "TypedStorage", "_load_from_bytes"},
    "torch.nn.parameter": {"Parameter"},
    "torch.serialization": {"_get_layout"},
}


def _allowed(module: str, name: str) -> bool:
    module = {"__builtin__": "builtins"}.get(module, module)
    if module.startswith(_ALLOWED_MODULE_PREFIXES):
        return True
    if module == "torch":
        # dtypes, storages, Size, device, layouts: plain data constructors
        return name.endswith("Storage") or name in {"Size", "device", "dtype", "layout", "memory_format",
                                                    "strided", "sparse_coo", "channels_last", "contiguous_format",
                                                    "preserve_format"} or _is_dtype_name(name)
    return name in _ALLOWED.get(module, ())


def _is_dtype_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"(float|bfloat|int|uint|complex|bool|qint|quint)\d*(x\d+)?(_[a-z0-9]+)?|bool|half|double|long|short|cfloat|cdouble", name))


def _globals_of(data: bytes) -> list[tuple[str, str]]:
    """Every (module, name) a pickle stream would import, read opcode by opcode."""
    found: list[tuple[str, str]] = []
    recent_strings: list[str] = []
    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            found.append((module, name))
        elif opcode.name == "STACK_GLOBAL":
            if len(recent_strings) >= 2:
                found.append((recent_strings[-2], recent_strings[-1]))
            else:
                found.append(("?", "?"))
        elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "STRING",
                             "SHORT_BINSTRING", "BINSTRING"):
            recent_strings.append(str(arg))
    return found


def unsafe_globals(path: str) -> list[str]:
    """Names of disallowed globals in any pickle inside the archive at `path` (sorted, unique)."""
    bad: set[str] = set()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            with zf.open(info) as f:
                head = f.read(2)
            # Protocol 2+ pickles start with PROTO (0x80) and a version byte.
            if len(head) < 2 or head[0] != 0x80 or head[1] > 5:
                continue
            data = zf.read(info)
            try:
                for module, name in _globals_of(data):
                    if not _allowed(module, name):
                        bad.add(f"{module}.{name}")
            except Exception:  # malformed stream: refuse rather than guess
                bad.add(f"<unreadable pickle {info.filename}>")
    return sorted(bad)
