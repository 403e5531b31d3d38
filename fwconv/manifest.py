"""The manifest (`fwconv.json`) written beside every artifact.

It records what the artifact is (source hash, route, tool versions), how to call it (each
input/output's name, shape, dtype, layout, quantization) and what it contains (op summary,
size). The validator reads it to align names and layouts; app developers read it to wire
the model in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from fwconv.specs import TensorSpec

SCHEMA_VERSION = 1


def manifest_path(artifact: str) -> str:
    """Directory artifacts (SavedModel) hold `fwconv.json`; files get `<file>.fwconv.json`."""
    if os.path.isdir(artifact):
        return os.path.join(artifact, "fwconv.json")
    return artifact + ".fwconv.json"


def sha256_of(path: str) -> str:
    """sha256 of a file, or of a directory's files in sorted order (names included)."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                if name == "fwconv.json":
                    continue
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).encode())
                _feed(h, full)
    else:
        _feed(h, path)
    return h.hexdigest()


def _feed(h, path: str) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def size_of(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs
                   if f != "fwconv.json")
    return os.path.getsize(path)


@dataclasses.dataclass
class Manifest:
    artifact: str
    format: str
    source: dict[str, Any]
    route: list[str]
    tools: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    ops: dict[str, Any] = dataclasses.field(default_factory=dict)
    size_bytes: int = 0
    sha256: str = ""
    stages: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    validation: dict[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["inputs"] = [s.to_dict() for s in self.inputs]
        d["outputs"] = [s.to_dict() for s in self.outputs]
        return {"schema_version": SCHEMA_VERSION, "generator": "fwconv", **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        kwargs["inputs"] = [TensorSpec.from_dict(s) for s in d.get("inputs", [])]
        kwargs["outputs"] = [TensorSpec.from_dict(s) for s in d.get("outputs", [])]
        return cls(**kwargs)

    @property
    def interface(self):
        """The recorded source -> artifact interface (fwconv.interface.Interface), or None."""
        from fwconv.interface import Interface

        return Interface.from_dict((self.extra or {}).get("interface"))

    def write(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, default=str)
            f.write("\n")


def read_manifest(artifact: str) -> Manifest | None:
    """The manifest beside an artifact, or None if it has none (not made by fwconv)."""
    path = manifest_path(artifact)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return Manifest.from_dict(json.load(f))
    except (ValueError, KeyError, TypeError):
        return None


def tool_versions(*dists: str) -> dict[str, str]:
    """Installed versions of the named distributions (metadata only: imports nothing)."""
    from importlib import metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        out["fwconv"] = metadata.version("fwconv")
    except metadata.PackageNotFoundError:
        pass
    return out
