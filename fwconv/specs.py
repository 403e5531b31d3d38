"""Tensor specs (name, shape, dtype, layout) and the user's ways of stating them.

Shapes use None for a dynamic dimension. Layout is "NCHW"/"NHWC" for 4-D image-like
tensors where known, otherwise None; it travels into the manifest so the validator and app
code never have to guess.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fwconv.errors import InputError

DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_,
}


@dataclasses.dataclass
class TensorSpec:
    name: str
    shape: list[int | None]
    dtype: str = "float32"
    layout: str | None = None
    # Quantization parameters (scale, zero_point) for int8 tensors; empty otherwise.
    quantization: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["quantization"]:
            d.pop("quantization")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(
            name=d["name"], shape=list(d["shape"]), dtype=d.get("dtype", "float32"),
            layout=d.get("layout"), quantization=d.get("quantization") or {},
        )

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) and d >= 0 for d in self.shape)


def identifier(name: str, *, leading_underscore: bool = False) -> str:
    """A tensor name made safe as a signature key / Python argument name (ASCII word characters,
    starting with a letter, or an underscore where allowed)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return safe if re.match(r"[A-Za-z_]" if leading_underscore else r"[A-Za-z]", safe) else f"t_{safe}"


def normalize_dtype(name: str) -> str:
    """Map a dtype spelled by numpy, torch or TF ('torch.float32', 'tf.int64') to fwconv's name."""
    key = str(name).replace("torch.", "").replace("tf.", "").replace("<dtype: '", "").rstrip("'>")
    aliases = {"float": "float32", "half": "float16", "double": "float64", "long": "int64",
               "int": "int32", "bool_": "bool"}
    key = aliases.get(key, key)
    try:
        return np.dtype(key).name
    except TypeError as exc:
        raise InputError(f"unknown dtype '{name}'") from exc


def parse_shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError as exc:
        raise InputError(f"bad shape '{text}': expected comma-separated integers like 1,3,224,224") from exc
    if not dims or any(d <= 0 for d in dims):
        raise InputError(f"bad shape '{text}': dimensions must be positive integers")
    from fwconv.limits import check_declared

    check_declared(f"--input-shape {text}", int(np.prod(dims, dtype=object)) * 8)  # sample arrays are allocated
    return dims


def _split_named(text: str) -> tuple[str | None, str]:
    """'name:1,16' -> ('name', '1,16'); '1,16' -> (None, '1,16')."""
    if ":" in text:
        name, _, rest = text.rpartition(":")
        return name, rest
    return None, text


def specs_from_options(shapes: tuple[str, ...], dtypes: tuple[str, ...]) -> list[TensorSpec]:
    """Build input specs from repeated --input-shape / --input-dtype options.

    Unnamed specs are positional (named input_0, input_1, ... until the model's own names
    are known); a dtype without a name applies to every input.
    """
    specs: list[TensorSpec] = []
    for i, text in enumerate(shapes):
        name, shape = _split_named(text)
        specs.append(TensorSpec(name=name or f"input_{i}", shape=parse_shape(shape)))
    for text in dtypes:
        name, dtype = _split_named(text)
        dtype = normalize_dtype(dtype)
        matched = [s for s in specs if name is None or s.name == name]
        if not matched:
            raise InputError(f"--input-dtype names '{name}', which no --input-shape names")
        for s in matched:
            s.dtype = dtype
    return specs


def name_positional(specs: list[TensorSpec], names: list[str]) -> list[TensorSpec]:
    """Specs from --input-shape with the model's input names: an unnamed (positional) one is the
    model's input at its position; a named one must be one of the model's inputs."""
    named = []
    for i, spec in enumerate(specs):
        spec = dataclasses.replace(spec)
        if spec.name == f"input_{i}" and i < len(names):
            spec.name = names[i]
        elif names and spec.name not in names:
            raise InputError(f"--input-shape names '{spec.name}', but the model's inputs are: {', '.join(names)}")
        named.append(spec)
    return named


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Arrays of a sample .npz in file order. np.load with allow_pickle=False: an .npz is data."""
    import os
    import zipfile

    if not os.path.exists(path):
        raise InputError(f"inputs file not found: {path}")
    if not os.path.isfile(path):  # a FIFO or device would block or never end
        raise InputError(f"inputs file {path} is not a regular file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read inputs file {path}: {exc}") from exc


def bind_arrays(arrays: dict[str, np.ndarray], specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Match sample arrays to model inputs: names that match win, the rest go positionally."""
    if len(arrays) != len(specs):
        raise InputError(
            f"the inputs file has {len(arrays)} array(s) but the model takes {len(specs)} input(s) "
            f"({', '.join(s.name for s in specs)})"
        )
    names = [s.name for s in specs]
    by_name = {k: v for k, v in arrays.items() if k in names}
    leftovers = [v for k, v in arrays.items() if k not in names]
    bound: dict[str, np.ndarray] = {}
    for spec in specs:
        bound[spec.name] = by_name[spec.name] if spec.name in by_name else leftovers.pop(0)
    return bound


def specs_of_arrays(arrays: dict[str, np.ndarray]) -> list[TensorSpec]:
    return [TensorSpec(name=k, shape=list(v.shape), dtype=v.dtype.name) for k, v in arrays.items()]
