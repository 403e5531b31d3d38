"""Craft hostile model files by hand, the way an attacker would: pickles that run a command,
hidden in every place a PyTorch archive is unpickled, and archives that declare huge sizes.

Every payload, if it ever ran, would create the file `canary` names: tests assert it does not
exist afterwards. Nothing here runs a payload.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile


def _su(text: str) -> bytes:
    """SHORT_BINUNICODE opcode for a short string."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def command_pickle(canary: str, style: str = "reduce") -> bytes:
    """A pickle that would run `touch canary` when loaded.

    style: "reduce" (protocol 2 GLOBAL + REDUCE), "proto0" (text protocol 0, no PROTO opcode),
    "memo" (protocol 4 STACK_GLOBAL whose operands come from the memo, with decoy strings pushed
    last so a scanner that looks at the most recent strings sees an allowed name),
    "load_from_bytes" (the allowlisted torch.storage._load_from_bytes, fed a nested pickle that
    torch.load would unpickle with weights_only=False).
    """
    cmd = f"touch {canary}"
    if style == "proto0":
        return f"cposix\nsystem\n(V{cmd}\ntR.".encode()
    if style == "reduce":
        return b"\x80\x02cposix\nsystem\nq\x00" + _su(cmd) + b"\x85R."
    if style == "memo":
        return (b"\x80\x04\x95" + struct.pack("<Q", 0) + _su("posix") + b"\x94" + _su("system") + b"\x94"
                + _su("collections") + _su("OrderedDict") + b"00"  # decoys, popped again
                + b"h\x00h\x01\x93" + _su(cmd) + b"\x85R.")
    if style == "load_from_bytes":
        inner = torch_save_zip(command_pickle(canary, "reduce"))
        return b"\x80\x02ctorch.storage\n_load_from_bytes\nB" + struct.pack("<I", len(inner)) + inner + b"\x85R."
    raise ValueError(style)


def torch_save_zip(data_pkl: bytes, name: str = "archive") -> bytes:
    """A torch.save-style zip (stored members) whose data.pkl is `data_pkl`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}/data.pkl", data_pkl)
        zf.writestr(f"{name}/byteorder", "little")
        zf.writestr(f"{name}/version", "3\n")
        zf.writestr(f"{name}/.data/serialization_id", "0" * 40)
    return buf.getvalue()


def rewrite_zip(src: str, dst: str, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> None:
    """Copy the zip at src to dst, replacing some members' bytes and adding others."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)


def _member(path: str, suffix: str) -> str:
    with zipfile.ZipFile(path) as zf:
        return next(n for n in zf.namelist() if n.endswith(suffix))


def pt2_with_payload(clean_pt2: str, dst: str, canary: str, where: str, style: str = "reduce") -> None:
    """A .pt2 whose `where` part carries a command pickle.

    where: "sample_inputs" (the nested torch.save zip of example inputs), "weight" (weight_0
    marked use_pickle and replaced by a torch.save zip), "constant" (a pickled tensor constant),
    "opaque" (an opaque-object constant, which torch.export.load reads with pickle.loads).
    """
    payload = command_pickle(canary, style)
    if where == "sample_inputs":
        rewrite_zip(clean_pt2, dst, {_member(clean_pt2, "sample_inputs/model.pt"): torch_save_zip(payload)})
        return
    if where == "weight":
        cfg_name = _member(clean_pt2, "weights/model_weights_config.json")
        with zipfile.ZipFile(clean_pt2) as zf:
            cfg = json.loads(zf.read(cfg_name))
        first = next(iter(cfg["config"].values()))
        first["use_pickle"] = True
        weight = cfg_name.rsplit("/", 1)[0] + "/" + first["path_name"]
        rewrite_zip(clean_pt2, dst, {cfg_name: json.dumps(cfg).encode(), weight: torch_save_zip(payload)})
        return
    if where in ("constant", "opaque"):
        cfg_name = _member(clean_pt2, "constants/model_constants_config.json")
        file = "tensor_0" if where == "constant" else "opaque_obj_0"
        cfg = {"config": {"evil": {"path_name": file, "is_param": False, "use_pickle": True, "tensor_meta": None}}}
        blob = torch_save_zip(payload) if where == "constant" else payload
        rewrite_zip(clean_pt2, dst, {cfg_name: json.dumps(cfg).encode()},
                    add={cfg_name.rsplit("/", 1)[0] + "/" + file: blob})
        return
    raise ValueError(where)


def torchscript_with_payload(clean_pt: str, dst: str, canary: str, style: str = "reduce") -> None:
    """A TorchScript .pt whose constants.pkl is a command pickle."""
    rewrite_zip(clean_pt, dst, {_member(clean_pt, "constants.pkl"): command_pickle(canary, style)})


def torch_save_with_payload(dst: str, canary: str, style: str = "reduce") -> None:
    """A `torch.save`-style .pt whose data.pkl is a command pickle."""
    with open(dst, "wb") as f:
        f.write(torch_save_zip(command_pickle(canary, style)))


def zip_bomb_pt(dst: str, declared: int = 1_500_000_000) -> None:
    """A small torch.save-style zip whose data.pkl declares `declared` bytes (deflated zeros)."""
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/byteorder", "little")
        with zf.open("archive/data.pkl", "w", force_zip64=True) as f:
            chunk = b"\x80\x02" + b"\x00" * (1 << 20)
            written = 0
            while written < declared:
                f.write(chunk[: min(len(chunk), declared - written)])
                written += len(chunk)


def pt2_with_huge_weight(clean_pt2: str, dst: str, elements: int = 10**12) -> None:
    """A .pt2 whose first weight record declares `elements` elements."""
    cfg_name = _member(clean_pt2, "weights/model_weights_config.json")
    with zipfile.ZipFile(clean_pt2) as zf:
        cfg = json.loads(zf.read(cfg_name))
    first = next(iter(cfg["config"].values()))
    first["tensor_meta"]["sizes"] = [{"as_int": elements}]
    first["tensor_meta"]["strides"] = [{"as_int": 1}]
    rewrite_zip(clean_pt2, dst, {cfg_name: json.dumps(cfg).encode()})


def pickle_loads_would_run(data: bytes) -> bool:
    """True when `data` is a well-formed pickle (for sanity checks of the crafted payloads)."""
    import pickletools

    try:
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
        return True
    except Exception:
        return False



def pt2_with_code(clean_pt2: str, dst: str, canary: str, where: str) -> None:
    """A .pt2 that would run code with no pickle at all.

    where: "aoti" (a shared library under data/aotinductor/, which torch.export.load dlopen()s),
    "expr" (a symbolic size whose expression sympy's sympify evaluates), "guard" (guards_code,
    which torch exec()s into the unlifted module).
    """
    model_json = _member(clean_pt2, "models/model.json")
    root = model_json.split("/")[0]
    if where == "aoti":
        rewrite_zip(clean_pt2, dst, {}, add={f"{root}/data/aotinductor/model/evil.wrapper.so": b"\x7fELF" + b"\0" * 60})
        return
    with zipfile.ZipFile(clean_pt2) as zf:
        program = json.loads(zf.read(model_json))
    command = f"__import__('os').system('touch {canary}')"
    if where == "expr":
        graph = program["graph_module"]["graph"]
        meta = graph["tensor_values"][next(iter(graph["tensor_values"]))]
        meta["sizes"][0] = {"as_expr": {"expr_str": f"{command}*0 + 2", "hint": {"as_int": 2}}}
    elif where == "guard":
        program["guards_code"] = [f"{command} == 0"]
    else:
        raise ValueError(where)
    rewrite_zip(clean_pt2, dst, {model_json: json.dumps(program).encode()})


def torchscript_writing_a_file(dst: str, target: str) -> None:
    """A scripted module whose forward writes `target` with torch.from_file(shared=True)."""
    import torch

    class Writer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.path = target

        def forward(self, x):
            t = torch.from_file(self.path, shared=True, size=4, dtype=torch.uint8)
            t.fill_(65)
            return x + t.sum().float()

    torch.jit.save(torch.jit.script(Writer()), dst)


def corrupt_member_crc(src: str, dst: str, suffix: str) -> None:
    """A copy of the zip at src with the first bytes of one member flipped (its CRC no longer matches)."""
    import shutil

    shutil.copy(src, dst)
    with zipfile.ZipFile(dst) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(suffix))
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    with open(dst, "r+b") as f:
        f.seek(start)
        data = f.read(16)
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in data))
