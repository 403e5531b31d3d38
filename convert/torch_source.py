"""Load a PyTorch model from what users hand us, without running untrusted code by default.

Accepted: TorchScript `.pt` (torch.jit.load), ExportedProgram `.pt2` (torch.export.load),
a factory `file.py:build_model` / `package.module:Class` (code the user names explicitly),
and, only with trust, a pickled nn.Module (`torch.save(model)`).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
from typing import Any

from fwconv.errors import InputError, UnsafeModelError, first_line, require
from fwconv.convert.formats import FACTORY_RE, detect_format
from fwconv.convert.pickle_scan import unsafe_globals


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


def load_torch_source(spec: str, *, trust_pickle: bool = False) -> TorchSource:
    fmt = detect_format(spec)
    torch = require("torch", "torch")
    if fmt == "factory":
        return _from_factory(spec)
    if fmt not in ("torchscript", "exported", "torch-pickle"):
        raise InputError(f"{spec} is a {fmt} model, not a PyTorch model")
    bad = unsafe_globals(spec)
    if bad and not trust_pickle:
        raise UnsafeModelError(
            f"{spec} contains pickled code references ({', '.join(bad[:4])}{'...' if len(bad) > 4 else ''}); "
            "loading it would run code from the file",
            hint="save it as TorchScript/.pt2 or pass a factory; or --trust-pickle if you trust its author",
        )
    try:
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
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot load {spec}: the pickle needs code that is not importable here ({first_line(exc)})",
                         hint="run from where the model's classes can be imported, or use a factory") from exc
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot load {spec}: {first_line(exc)}") from exc
    if isinstance(obj, dict):
        raise InputError(
            f"{spec} holds a state_dict (weights only, no architecture)",
            hint="pass a factory like model.py:build_model that builds the module and loads these weights",
        )
    if not isinstance(obj, torch.nn.Module):
        raise InputError(f"{spec} holds a {type(obj).__name__}, not an nn.Module")
    return _module_source(obj.eval(), spec)


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
