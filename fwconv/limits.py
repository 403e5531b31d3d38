"""Caps on what an untrusted file may declare, checked before anything is read or allocated.

A crafted archive can declare a member of terabytes in a few kilobytes (a zip bomb), or a
tensor of 10^12 elements; reading or allocating that is a denial of service. The cap is one
number, in bytes, for any single archive member or tensor: 16 GiB by default, set with
`fwconv --max-size SIZE` (or FWCONV_MAX_SIZE, which isolated workers inherit); `none` lifts it.
A compressed member that would expand more than BOMB_RATIO times is refused whatever the cap:
model weights barely compress, so such a ratio only comes from a bomb.
"""

from __future__ import annotations

import os
import re

from fwconv.errors import InputError

ENV = "FWCONV_MAX_SIZE"
DEFAULT_MAX_BYTES = 16 << 30
BOMB_RATIO = 100
BOMB_MIN_BYTES = 64 << 20  # small members may compress well (text, zeros) without being bombs

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int | None:
    """'16G', '512M', '1000', 'none' -> bytes (None = no cap)."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text in ("NONE", "OFF", "0"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", text)
    if not match:
        raise InputError(f"bad size '{text}'", hint="write e.g. 16G, 512M, 1000000 or none")
    return int(float(match[1]) * _UNITS[match[2]])


def max_bytes() -> int | None:
    """The cap in force (None when lifted)."""
    value = os.environ.get(ENV)
    return DEFAULT_MAX_BYTES if not value else parse_size(value)


def check_declared(what: str, declared: int, *, compressed: int | None = None) -> None:
    """Refuse (exit 2) a member or tensor that declares more than the cap, or a zip bomb."""
    cap = max_bytes()
    if cap is not None and declared > cap:
        raise InputError(f"{what} declares {declared:,} bytes, over the {cap:,}-byte cap",
                         hint=f"if the model really is that large, raise it: fwconv --max-size SIZE (or {ENV})")
    if compressed is not None and declared > BOMB_MIN_BYTES and declared > BOMB_RATIO * max(compressed, 1):
        raise InputError(f"{what} would expand {declared // max(compressed, 1):,}x "
                         f"({compressed:,} -> {declared:,} bytes): refused as a compression bomb")
