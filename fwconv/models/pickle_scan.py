"""Static check of the pickle streams inside a PyTorch archive, before anything loads it.

torch.jit.load, torch.export.load and torch.load(weights_only=False) all unpickle parts of
the file, and a pickle can name any Python callable. This reads every pickle without executing
it: a small symbolic pickle machine tracks the stack and the memo, so every opcode that resolves
a global (GLOBAL, INST, STACK_GLOBAL, the extension registry) is seen with the real names it
would import, whatever the protocol. Only globals that rebuild tensors and TorchScript objects
are allowed. Nested archives (a torch.save zip inside a .pt2) are scanned too, every member's
declared size is capped first (fwconv.limits), and streams are read incrementally.

This is the second line of defence: the loaders themselves are also restricted
(torch_source.restricted_unpickling).
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import zipfile
from typing import IO, Iterator

from fwconv.limits import check_declared

_ALLOWED_MODULE_PREFIXES = ("__torch__",)  # TorchScript classes: resolved by the TorchScript unpickler
ALLOWED = {
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "slice", "complex", "tuple", "list", "dict", "int", "float", "bool", "str", "bytes"},
    "torch._utils": {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                     "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
                     "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass", "_rebuild_nested_tensor"},
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch.jit._pickle": {"build_intlist", "build_tensorlist", "build_doublelist", "build_boollist",
                          "build_tensor_from_id", "restore_type_tag"},
    # Not torch.storage._load_from_bytes: it calls torch.load(weights_only=False) on its argument.
    "torch.storage": {"UntypedStorage", "TypedStorage"},
    "torch.nn.parameter": {"Parameter"},
    "torch.serialization": {"_get_layout"},
}
_TORCH_NAMES = {"Size", "device", "dtype", "layout", "memory_format", "strided", "sparse_coo", "channels_last",
                "contiguous_format", "preserve_format"}
_DTYPE_RE = re.compile(r"(float|bfloat|int|uint|complex|bool|qint|quint)\d*(x\d+)?(_[a-z0-9]+)?|bool|half|double|long|short"
                       r"|cfloat|cdouble")
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
_MAX_NESTING = 3


def allowed(module: str, name: str) -> bool:
    module = {"__builtin__": "builtins"}.get(module, module)
    if module.startswith(_ALLOWED_MODULE_PREFIXES):
        return True
    if module == "torch":  # dtypes, storages, Size, device, layouts: plain data constructors
        return name.endswith("Storage") or name in _TORCH_NAMES or bool(_DTYPE_RE.fullmatch(name))
    return name in ALLOWED.get(module, ())


class _Mark:
    """The MARK object on the symbolic stack."""


class _Unknown:
    """Any value the scan does not track (only string constants matter for resolving globals)."""


MARK, UNKNOWN = _Mark(), _Unknown()


def _pop_to_mark(stack: list) -> None:
    while stack:
        if stack.pop() is MARK:
            return
    raise ValueError("MARK missing")


def _step(opcode, arg, stack: list, memo: dict) -> tuple[str, str] | None:
    """Apply one opcode to the symbolic stack; return the (module, name) it imports, if any."""
    name = opcode.name
    if name in _STRING_OPS:
        stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        return None
    if name in ("GLOBAL", "INST"):
        module, _, attr = str(arg).partition(" ")
        if name == "INST":
            _pop_to_mark(stack)
        stack.append(UNKNOWN)
        return module, attr
    if name == "STACK_GLOBAL":
        attr, module = stack.pop(), stack.pop()
        stack.append(UNKNOWN)
        if isinstance(attr, str) and isinstance(module, str):
            return module, attr
        return "<computed>", "<computed>"  # names built at load time: nothing to check them against
    if name.startswith("EXT"):
        stack.append(UNKNOWN)
        return "<extension registry>", str(arg)
    if name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = stack[-1]
    elif name == "MEMOIZE":
        memo[len(memo)] = stack[-1]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo.get(arg, UNKNOWN))
    elif name == "DUP":
        stack.append(stack[-1])
    else:  # generic stack effect from pickletools' opcode table
        before = opcode.stack_before
        if pickletools.markobject in before:  # [below..., mark, slice]: the slice goes first
            _pop_to_mark(stack)
            for _ in range(before.index(pickletools.markobject)):
                stack.pop()
        else:
            for _ in before:
                stack.pop()
        stack.extend(MARK if item is pickletools.markobject else UNKNOWN for item in opcode.stack_after)
    return None


def _one_pickle(stream: IO[bytes]) -> Iterator[tuple[str, str]]:
    stack: list = []
    memo: dict = {}
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            found = _step(opcode, arg, stack, memo)
            if found:
                yield found
            if opcode.name == "STOP":
                return
    except Exception as exc:  # unknown opcode, truncated argument, stack underflow...
        raise ValueError(f"malformed pickle: {exc}") from exc
    raise ValueError("malformed pickle: no STOP opcode")


def globals_of(stream: IO[bytes]) -> Iterator[tuple[str, str]]:
    """Every (module, name) the pickles in `stream` would import, yielded as they are met.

    Consecutive pickles are read to the end of the stream (a legacy torch.save file is several
    pickles, then raw storage bytes: a later stream that does not parse ends the scan). The
    first stream must parse, or ValueError is raised. `stream` needs read, readline and peek.
    """
    first = True
    while stream.peek(1):
        try:
            yield from _one_pickle(stream)
        except ValueError:
            if first:
                raise
            return
        first = False


def _scan_stream(stream: IO[bytes], where: str, bad: set[str]) -> None:
    try:
        for module, name in globals_of(stream):
            if not allowed(module, name):
                bad.add(f"{module}.{name}")
    except Exception:  # malformed stream: refuse rather than guess
        bad.add(f"<unreadable pickle {where}>")


# torch._export.serde.schema.ScalarType -> bytes per element (unknown ones count as 1)
_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1, 13: 2, 28: 2, 34: 4, 35: 8}


def _tensor_extent(meta: dict) -> int:
    """Bytes a strided tensor record reaches into its payload: (offset + sum((n-1)*stride) + 1) * itemsize."""
    ints = lambda items: [int(x["as_int"]) for x in items]
    sizes, strides = ints(meta["sizes"]), ints(meta["strides"])
    if any(n < 0 for n in sizes) or any(st < 0 for st in strides):
        raise ValueError("negative size or stride")
    if 0 in sizes:
        return 0
    last = int(meta["storage_offset"]["as_int"]) + sum((n - 1) * st for n, st in zip(sizes, strides, strict=True))
    return (last + 1) * _ITEMSIZE.get(int(meta["dtype"]), 1)


def _check_tensor_record(zf: zipfile.ZipFile, folder: str, key: str, entry: dict) -> None:
    """A weight/constant record must fit the cap and the payload it points into."""
    from fwconv.errors import InputError

    try:
        extent = _tensor_extent(entry["tensor_meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"tensor record '{key}' in {folder} is malformed ({exc})") from exc
    check_declared(f"tensor '{key}'", extent)
    try:
        held = zf.getinfo(f"{folder}/{entry.get('path_name')}").file_size
    except KeyError:
        return  # missing payload: torch.export.load names it
    if extent > held:
        raise InputError(f"tensor '{key}' declares {extent:,} bytes but its payload holds {held:,} (corrupt or crafted)")


def _pickled_paths(zf: zipfile.ZipFile) -> set[str]:
    """Members a .pt2 loader unpickles (weights/constants marked use_pickle, opaque/custom
    objects); every plain tensor record is checked against the cap and its payload on the way."""
    paths = set()
    for info in zf.infolist():
        if not info.filename.endswith("_config.json") or "/data/" not in info.filename:
            continue
        check_declared(info.filename, info.file_size, compressed=info.compress_size)
        try:
            config = json.loads(zf.read(info)).get("config", {})
        except (ValueError, AttributeError):
            continue  # torch.export.load will refuse it as corrupt
        folder = info.filename.rsplit("/", 1)[0]
        for key, entry in config.items() if isinstance(config, dict) else ():
            if not isinstance(entry, dict):
                continue
            if entry.get("use_pickle") or not entry.get("tensor_meta"):
                paths.add(f"{folder}/{entry.get('path_name')}")
            else:
                _check_tensor_record(zf, folder, key, entry)
    return paths


def _is_pickle_member(info: zipfile.ZipInfo, pickled: set[str]) -> bool:
    """Members some loader unpickles: *.pkl / *.debug_pkl (torch.save, TorchScript), and in a
    .pt2 the sample inputs, pickled weights/constants and the legacy constants file. Raw tensor
    storages are never unpickled (and may begin with any byte), so they are not parsed."""
    name = info.filename
    return (name.endswith("pkl") or name in pickled or "/sample_inputs/" in name
            or (("/data/constants/" in name or "/data/weights/" in name) and name.endswith(".pt")))


def _scan_zip(zf: zipfile.ZipFile, where: str, bad: set[str], depth: int) -> None:
    from fwconv.models.pt2_code import code_in_program

    for info in zf.infolist():  # sizes first: nothing is read before every member passes
        check_declared(f"archive member {where}!{info.filename}" if where else f"archive member {info.filename}",
                       info.file_size, compressed=info.compress_size)
    corrupt = zf.testzip()
    if corrupt is not None:  # a CRC mismatch: corrupt, or changed after it was written
        from fwconv.errors import InputError

        raise InputError(f"{where or 'the archive'}: member {corrupt} fails its checksum (corrupt file)")
    pickled = _pickled_paths(zf)
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = f"{where}!{info.filename}" if where else info.filename
        bad.update(code_in_program(info, zf))
        try:
            with zf.open(info) as f:
                head = f.read(4)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
            bad.add(f"<unreadable member {name}: {exc}>")  # a loader may read it another way: refuse
            continue
        if head.startswith(b"PK\x03\x04"):
            if depth >= _MAX_NESTING:
                bad.add(f"<archive nested deeper than {_MAX_NESTING} levels: {name}>")
                continue
            try:
                with zipfile.ZipFile(io.BytesIO(zf.read(info))) as inner:
                    _scan_zip(inner, name, bad, depth + 1)
            except zipfile.BadZipFile:
                bad.add(f"<unreadable nested archive {name}>")
        elif _is_pickle_member(info, pickled):
            with zf.open(info) as f:  # ZipExtFile: reads stay within the (capped) declared size
                _scan_stream(f, name, bad)


def unsafe_globals(path: str) -> list[str]:
    """Names of disallowed globals in any pickle inside the archive at `path` (sorted, unique).

    Raises InputError (exit 2) for a member over the size cap or a compression bomb."""
    bad: set[str] = set()
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                _scan_zip(zf, "", bad, 0)
        except zipfile.BadZipFile as exc:  # a zip whose directory does not hold up: never scan it as something else
            bad.add(f"<unreadable archive: {exc}>")
    else:
        import os

        check_declared(path, os.path.getsize(path))
        with open(path, "rb") as f:  # a legacy (non-zip) torch.save file: pickles, then raw data
            _scan_stream(f, path, bad)
    return sorted(bad)
