"""Load a PyTorch model from what users hand us, without running untrusted code by default.

Accepted: TorchScript `.pt` (torch.jit.load), ExportedProgram `.pt2` (torch.export.load),
a factory `file.py:build_model` / `package.module:Class` (code the user names explicitly),
and, only with trust, a pickled nn.Module (`torch.save(model)`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import io
import os
import pickle
import re
import sys
from typing import Any, Iterator

import numpy as np

from fwconv.errors import FwconvError, InputError, RunnerError, UnsafeModelError, first_line, require
from fwconv.models.formats import FACTORY_RE, detect_format
from fwconv.models.pickle_scan import allowed, unsafe_globals


@dataclasses.dataclass
class TorchSource:
    kind: str  # "torchscript" | "exported" | "module"
    model: Any  # ScriptModule | ExportedProgram | nn.Module
    path: str
    input_names: list[str]
    example_inputs: tuple | None = None  # shapes a .pt2 was exported with

    def callable(self):
        """Something to call with positional tensors."""
        return self.model.module() if self.kind == "exported" else self.model

    def input_specs(self, names: list[str] | None = None) -> list:
        """Shapes and dtypes the file records (a .pt2's example inputs); InputError otherwise."""
        from fwconv.specs import TensorSpec, normalize_dtype

        if not self.example_inputs:
            raise InputError(f"{self.path} does not record its input shapes",
                             hint="give them with --input-shape 1,3,224,224 (repeatable) or --inputs FILE.npz")
        names = names or self.input_names
        return [TensorSpec(names[i] if i < len(names) else f"input_{i}", list(t.shape), normalize_dtype(str(t.dtype)))
                for i, t in enumerate(self.example_inputs)]


def load_torch_source(spec: str, *, trust_pickle: bool = False) -> TorchSource:
    fmt = detect_format(spec)
    torch = require("torch", "torch")
    if fmt == "factory":
        return _from_factory(spec)
    if fmt not in ("torchscript", "exported", "torch-pickle"):
        raise InputError(f"{spec} is a {fmt} model, not a PyTorch model")
    bad = unsafe_globals(spec)  # also enforces the size caps, trusted or not
    if bad and not trust_pickle:
        raise UnsafeModelError(
            f"{spec} contains code that loading it would run ({', '.join(bad[:4])}{'...' if len(bad) > 4 else ''}); "
            "loading it would run code from the file",
            hint="save it as TorchScript/.pt2 or pass a factory; or --trust-pickle if you trust its author",
        )
    try:
        with contextlib.nullcontext() if trust_pickle else restricted_unpickling(torch):
            return _load_archive(torch, spec, fmt, trust_pickle)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)|global '([\w.]+)'", str(exc))
        what = f" ({named[1] or named[2]})" if named else ""
        raise UnsafeModelError(f"{spec} holds a pickled object that is not plain tensor data{what}; "
                               "loading it would run code from the file",
                               hint="--trust-pickle if you trust its author") from exc
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot load {spec}: the pickle needs code that is not importable here ({first_line(exc)})",
                         hint="run from where the model's classes can be imported, or use a factory") from exc
    except FwconvError:
        raise
    except Exception as exc:  # any failure to read the user's file is bad input, whatever the loader raised
        raise InputError(f"cannot load {spec} as {fmt}: {type(exc).__name__}: {first_line(exc)}") from exc


def _load_archive(torch, spec: str, fmt: str, trust_pickle: bool) -> TorchSource:
    if fmt == "torchscript":
        model = torch.jit.load(spec, map_location="cpu").eval()
        names = [v.debugName().split(".")[0] for v in list(model.graph.inputs())[1:]]
        return TorchSource("torchscript", model, spec, names)
    if fmt == "exported":
        ep = torch.export.load(spec)
        names = list(ep.graph_signature.user_inputs)
        example = getattr(ep, "example_inputs", None)
        args = tuple(example[0]) if example else None
        return TorchSource("exported", ep, spec, names, args)
    obj = torch.load(spec, map_location="cpu", weights_only=not trust_pickle)
    if isinstance(obj, dict):
        raise InputError(
            f"{spec} holds a state_dict (weights only, no architecture)",
            hint="pass a factory like model.py:build_model that builds the module and loads these weights",
        )
    if not isinstance(obj, torch.nn.Module):
        raise InputError(f"{spec} holds a {type(obj).__name__}, not an nn.Module")
    return _module_source(obj.eval(), spec)


class _AllowlistUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the scan's allowlisted globals."""

    def find_class(self, module: str, name: str):
        if not allowed(module, name):
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return super().find_class(module, name)


class _RestrictedPickleModule:
    """Stands in for the `pickle` module inside torch's .pt2 reader: loads are allowlisted."""

    def __getattr__(self, name: str):
        return getattr(pickle, name)

    @staticmethod
    def loads(data: bytes, **_kw):
        return _AllowlistUnpickler(io.BytesIO(data)).load()


@contextlib.contextmanager
def restricted_unpickling(torch) -> Iterator[None]:
    """While loading an untrusted archive, every unpickling torch does is restricted.

    torch.export.load unpickles nested blobs (sample inputs, weights and constants marked
    use_pickle) with torch.load(weights_only=False), and opaque constants with pickle.loads.
    Here torch.load is forced to weights_only=True (torch's own restricted unpickler) and
    pickle.loads in the .pt2 reader to an allowlisted unpickler; both are restored after.
    """
    from torch.export.pt2_archive import _package

    real_load, real_pickle = torch.load, _package.pickle

    def weights_only_load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        kwargs.pop("pickle_module", None)
        return real_load(f, *args, **kwargs)

    torch.load, _package.pickle = weights_only_load, _RestrictedPickleModule()
    try:
        yield
    finally:
        torch.load, _package.pickle = real_load, real_pickle


def _from_factory(spec: str) -> TorchSource:
    torch = require("torch", "torch")
    match = FACTORY_RE.match(spec)
    target, attr = match["target"], match["attr"]
    try:
        if target.endswith(".py"):
            if not os.path.exists(target):
                raise InputError(f"factory file not found: {target}")
            name = f"fwconv_factory_{abs(hash(os.path.abspath(target)))}"
            mod_spec = importlib.util.spec_from_file_location(name, target)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        model = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"factory {spec} failed: {type(exc).__name__}: {first_line(exc)}") from exc
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"factory {spec} returned a {type(model).__name__}, not an nn.Module")
    return _module_source(model.eval(), spec)


def _module_source(model, spec: str) -> TorchSource:
    params = inspect.signature(model.forward).parameters.values()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return TorchSource("module", model, spec, names)


def flatten_outputs(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Name every tensor of a model's (possibly nested) output, in pytree order.

    A single tensor is `output`; tuples give `output_0, output_1, ...`; dicts (including
    transformers' ModelOutput) keep their keys. The ONNX export uses the same names.
    """
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return [(prefix or "output", obj)]
    if isinstance(obj, dict) or (hasattr(obj, "keys") and hasattr(obj, "__getitem__")):
        out = []
        for key in obj.keys():
            if obj[key] is not None:
                out.extend(flatten_outputs(obj[key], f"{prefix}_{key}" if prefix else str(key)))
        return out
    if isinstance(obj, (list, tuple)):
        out = []
        for i, item in enumerate(obj):
            out.extend(flatten_outputs(item, f"{prefix or 'output'}_{i}"))
        return out
    if obj is None:
        return []
    raise RunnerError(f"cannot read a model output of type {type(obj).__name__}")


def to_numpy(tensor) -> np.ndarray:
    t = tensor.detach().cpu()
    return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
