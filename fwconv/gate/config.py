"""The gate config: a TOML file (or `[tool.fwconv]` in pyproject.toml), validated into jobs.

    [gate]                        # optional defaults for every model
    output_dir = "fwconv-artifacts"
    golden_dir = "goldens"        # goldens/<model>/ (see `fwconv golden save`)
    samples = 1
    max_latency_ratio = 2.0

    [[model]]
    name = "classifier"
    source = "models/classifier.pt2"      # or "models/net.py:build"
    inputs = "models/sample.npz"          # or input_shape = ["1,3,224,224"], input_dtype = ["int64"]
    targets = ["tflite", "onnx", "savedmodel"]  # or "pte" (ExecuTorch; backend = "portable" per target)
    atol = 1e-4                           # optional; rtol, samples, max_latency_ratio too
    tolerance = { logits = 1e-3 }         # per-output atol
    [model.target.tflite]                 # per-target overrides (any of the above, and
    quantize = "fp16"                     # conversion options: via, quantize, calibration, layout...)

Relative paths are relative to the config file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from typing import Any

from fwconv.models.formats import TARGET_SUFFIX
from fwconv.errors import InputError

TARGETS = ("onnx", "tflite", "savedmodel", "pte", "litertlm")
# The config's own structure; every other key is an option, declared once in fwconv.options
# (door GATE), with its type: the gate adds no option of its own.
STRUCTURE_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "source": str, "targets": list, "golden": str, "target": dict, "timeout": (int, float),
    "output_dir": str, "golden_dir": str}
MODEL_STRUCTURE = {"name", "source", "targets", "golden", "target", "timeout"}
GATE_STRUCTURE = {"output_dir", "golden_dir", "timeout"}


def option_types() -> dict[str, tuple[type, ...]]:
    """The gate keys that are options, with the types a TOML value may have."""
    from fwconv.options import GATE, Options, accepted_types, door_of, fields

    return {f.name: accepted_types(f) for f in fields(Options) if GATE in door_of(f).doors}


def path_keys() -> tuple[str, ...]:
    """Option keys that name files (made absolute against the config's folder), and the structure's."""
    from fwconv.options import GATE, Options, door_of, fields

    return ("source", "golden") + tuple(f.name for f in fields(Options) if GATE in door_of(f).doors and door_of(f).path)


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclasses.dataclass
class GateJob:
    """One model x target: everything a worker needs, as plain data (it crosses processes)."""

    model: str
    target: str
    source: str
    settings: dict[str, Any]
    output: str
    golden: str | None = None
    timeout: float = 1800.0

    @property
    def id(self) -> str:
        return f"{self.model}:{self.target}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _abs(base: str, value: str) -> str:
    """A path relative to the config file; a `file.py:fn` factory's file likewise."""
    from fwconv.models.formats import FACTORY_RE

    factory = FACTORY_RE.match(value)
    if factory and factory["target"].endswith(".py") and not os.path.exists(os.path.join(base, value)):
        return f"{os.path.normpath(os.path.join(base, factory['target']))}:{factory['attr']}"
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def load_config(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        raise InputError(f"gate config not found: {path}")
    if not os.path.isfile(path):
        raise InputError(f"gate config {path} is not a file")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise InputError(f"cannot read gate config {path}: {exc.strerror or exc}") from exc
    if os.path.basename(path) == "pyproject.toml":
        tool = data.get("tool")
        data = tool.get("fwconv") if isinstance(tool, dict) else None
        if not isinstance(data, dict):
            raise InputError(f"{path} has no [tool.fwconv] table")
    return data


def _check_keys(table: Any, structure: set[str], where: str) -> None:
    """Known keys only (the structure's and the options'), each with a value of the right type
    (one clear line, exit 2, otherwise)."""
    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table, not {type(table).__name__}")
    types = {**option_types(), **{k: STRUCTURE_TYPES[k] for k in structure}}
    unknown = sorted(set(table) - set(types))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}", hint=f"allowed: {', '.join(sorted(types))}")
    for key, value in table.items():
        expected = types[key] if isinstance(types[key], tuple) else (types[key],)
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            names = " or ".join(t.__name__ for t in expected)
            raise InputError(f"{where}: '{key}' must be {names}, not {type(value).__name__} ({value!r})")
    if isinstance(table.get("targets"), list) and not all(isinstance(t, str) for t in table["targets"]):
        raise InputError(f"{where}: 'targets' must be a list of strings")
    tolerance = table.get("tolerance")
    if isinstance(tolerance, dict) and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in tolerance.values()):
        raise InputError(f"{where}: 'tolerance' values must be numbers (output = atol)")


def _check_name(name: str, where: str) -> None:
    """Model names become directory and file names under output_dir: plain identifiers only."""
    if not NAME_RE.fullmatch(name):
        raise InputError(f"{where}: model name {name!r} is not a plain name",
                         hint="use letters, digits, '_', '-' and '.', starting with a letter or digit")


def jobs_from_config(path: str, *, only: list[str] | None = None) -> tuple[list[GateJob], dict[str, Any]]:
    data = load_config(path)
    base = os.path.dirname(os.path.abspath(path))
    _check_keys(data.get("gate", {}), GATE_STRUCTURE, "[gate]")
    gate = dict(data.get("gate", {}))
    models = data.get("model")
    if not models:
        raise InputError(f"{path} defines no [[model]]")
    if not isinstance(models, list):
        raise InputError(f"{path}: 'model' must be an array of tables ([[model]]), not {type(models).__name__}")
    unknown = sorted(set(data) - {"gate", "model"})
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)}", hint="allowed: gate, model")
    output_dir = _abs(base, gate.pop("output_dir", "fwconv-artifacts"))
    golden_dir = gate.pop("golden_dir", None)
    default_timeout = float(gate.pop("timeout", 1800))
    jobs: list[GateJob] = []
    seen = set()
    for i, model in enumerate(models):
        where = f"model #{i + 1}" + (f" ({model.get('name')})" if isinstance(model, dict) and model.get("name") else "")
        _check_keys(model, MODEL_STRUCTURE, where)
        for key in ("name", "source", "targets"):
            if key not in model:
                raise InputError(f"{where}: '{key}' is required")
        name = model["name"]
        _check_name(name, where)
        if name in seen:
            raise InputError(f"model name '{name}' appears twice")
        seen.add(name)
        if only and name not in only:
            continue
        targets = model["targets"]
        if not targets:
            raise InputError(f"{where}: 'targets' is empty", hint=f"choose from {', '.join(TARGETS)}")
        bad = [t for t in targets if t not in TARGETS]
        if bad:
            raise InputError(f"{where}: unknown target(s) {', '.join(bad)}", hint=f"choose from {', '.join(TARGETS)}")
        per_target = model.get("target", {})
        for t, table in per_target.items():
            _check_keys(table, set(), f"{where} target.{t}")
        golden = model.get("golden") or (os.path.join(golden_dir, name) if golden_dir else None)
        for target in targets:
            settings = {k: v for k, v in gate.items()}
            settings.update({k: v for k, v in model.items() if k not in MODEL_STRUCTURE})
            settings.update(per_target.get(target, {}))
            for key in path_keys():
                if isinstance(settings.get(key), str):
                    settings[key] = _abs(base, settings[key])
            suffix = TARGET_SUFFIX[target]
            jobs.append(GateJob(model=name, target=target, source=_abs(base, model["source"]), settings=settings,
                            output=os.path.join(output_dir, name, f"{name}{suffix}"),
                            golden=_abs(base, golden) if golden else None,
                            timeout=float(model.get("timeout", default_timeout))))
    _check_jobs(jobs, output_dir)
    return jobs, {"output_dir": output_dir, "config": os.path.abspath(path)}


def _check_jobs(jobs: list[GateJob], output_dir: str) -> None:
    """Before any job runs: every job's options and tolerances are valid (the same builders the
    CLI uses), output_dir can be a directory, and no job's output touches any job's input."""
    from fwconv.manifest import manifest_path
    from fwconv.staging import check_not_an_input, protected_paths

    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise InputError(f"output_dir {output_dir} is a file, not a directory")
    for job in jobs:
        options = convert_options(job.settings)
        gate_settings(job.settings, options.artifact_precision)
        if job.timeout <= 0:
            raise InputError(f"model '{job.model}': timeout must be positive")
    inputs = protected_paths(*(j.source for j in jobs), *(j.settings.get(k) for j in jobs for k in ("inputs", "calibration")))
    for job in jobs:
        for out in (job.output, manifest_path(job.output)):
            check_not_an_input(out, inputs)


def input_paths(path: str) -> list[str]:
    """The config and every file its jobs read (sources, inputs, calibration): no output may touch them."""
    from fwconv.staging import protected_paths

    jobs, _ = jobs_from_config(path)
    return protected_paths(path, *(j.source for j in jobs),
                           *(j.settings.get(k) for j in jobs for k in ("inputs", "calibration")))


def convert_options(settings: dict[str, Any]):
    """The job's Options (declared once in fwconv.options; keys checked with the config), with the
    gate's own defaults for timing; artifacts are replaced, and kept when they fail parity (the
    report shows why)."""
    from fwconv.options import GATE, Options, door_defaults

    return Options(**{**door_defaults(GATE), **settings, "force": True, "keep_failed": True})


def gate_settings(settings: dict[str, Any], precision: str):
    """The job's validation settings, by the same builder the CLI uses; a worker's share of the
    cores unless the config sets `threads`."""
    from fwconv.procs import worker_threads
    from fwconv.validators.settings import settings_from

    return settings_from(convert_options(settings), precision=precision, threads=worker_threads())
