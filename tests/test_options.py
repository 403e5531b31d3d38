"""One option schema (fwconv.options) generates every door: the command line's flags, the gate's
TOML keys and types, the Python API and the pytest plugin's keywords. These tests derive each
door from the schema and fail when a door adds an option of its own, drops one, or accepts a key
and then ignores it (the gate once read `threads` and `latency_runs`, keys its check refused)."""

from __future__ import annotations

import textwrap

import click
import pytest

from fwconv.errors import InputError
from fwconv.options import (CONVERT, CONVERT_TO, DEBUG, GATE, GATE_CLI, GLOBAL, GOLDEN, INSPECT, PLUGIN, VALIDATE,
                            CommandOptions, Options, door_of, fields, names_for)


def _commands():
    """(command path, the door its options come from) for every command of the CLI."""
    from fwconv.cli import main

    out = [("fwconv", main, {GLOBAL})]
    for name, cmd in main.commands.items():
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", c, {GOLDEN}) for sub, c in cmd.commands.items()]
            continue
        door = {"validate": {VALIDATE}, "debug": {DEBUG}, "inspect": {INSPECT}, "gate": {GATE_CLI},
                "convert": {CONVERT, CONVERT_TO}}.get(name, {CONVERT})
        out.append((name, cmd, door))
    return out


def _flag(field) -> str:
    door = door_of(field)
    return (door.flag or "--" + field.name.replace("_", "-")).split("/")[0]


def test_every_command_line_flag_comes_from_the_schema():
    """Each command's options are exactly the declared ones of its door, under their declared
    names and flags; nothing is declared by hand in a command."""
    declared = {f.name: f for cls in (Options, CommandOptions) for f in fields(cls)}
    for path, command, doors in _commands():
        params = {p.name: p for p in command.params if isinstance(p, click.Option) and p.name not in ("help", "version")}
        expected = {n for d in doors for n in names_for(d)}
        assert set(params) == expected, f"{path}: own {sorted(set(params) - expected)}, missing {sorted(expected - set(params))}"
        for name, param in params.items():
            assert _flag(declared[name]) in param.opts, (path, name, param.opts)
            assert param.help == door_of(declared[name]).help, (path, name)


def test_gate_keys_are_the_schema_and_nothing_else(tmp_path):
    from fwconv.gate.config import GATE_STRUCTURE, MODEL_STRUCTURE, jobs_from_config, option_types

    assert set(option_types()) == {f.name for f in fields(Options) if GATE in door_of(f).doors}
    assert MODEL_STRUCTURE == {"name", "source", "targets", "golden", "target", "timeout"}
    assert GATE_STRUCTURE == {"output_dir", "golden_dir", "timeout"}
    (tmp_path / "m.pt2").write_bytes(b"")
    for where in ("[gate]\nflavour = 1\n", "[[model]]\nname = 'm'\nsource = 'm.pt2'\ntargets = ['onnx']\nflavour = 1\n"):
        text = where if "[[model]]" in where else where + "[[model]]\nname = 'm'\nsource = 'm.pt2'\ntargets = ['onnx']\n"
        (tmp_path / "g.toml").write_text(text)
        with pytest.raises(InputError, match="unknown key"):
            jobs_from_config(str(tmp_path / "g.toml"))


# A value for every gate key, each unlike its default: a new gate option must be added here,
# and the test then proves it reaches the job's options.
GATE_VALUES = {
    "inputs": "s.npz", "input_shape": ["1,3,8,8"], "input_dtype": ["float32"], "input_range": ["0,1"],
    "dynamic": ["batch:1..4"], "samples": 2, "seed": 3, "atol": 0.5, "rtol": 0.25, "tolerance": {"y": 0.1},
    "precision": "fp16", "map": ["x=x"], "threads": 1, "warmup": 4, "warmup_seconds": 0.5, "runs": 7,
    "min_seconds": 0.25, "latency": True, "max_latency_ratio": 3.0, "opset": 17, "exporter": "dynamo",
    "fp16": False, "quantize": "int8", "calibration": "c.npz", "int8_io": True, "min_cosine": 0.9,
    "max_float_ops": 3, "via": "onnx", "backend": "xnnpack", "layout": "nhwc", "outputs": "tuple",
    "allow_flex": True, "repair": False, "repair_budget": 30.0, "debug_on_failure": True, "stage_timeout": 99.0,
    "prompt": ["hello there"], "decode_steps": 8, "trust_remote_code": True, "prefill_length": [8, 16],
    "cache_length": 64, "recipe": "dynamic_wi4_afp32", "reduce": True, "reduce_budget": 60.0,
}


def test_every_gate_key_reaches_the_jobs_options_and_settings(tmp_path):
    from fwconv.gate.config import convert_options, gate_settings, jobs_from_config

    assert set(GATE_VALUES) == set(names_for(GATE))
    (tmp_path / "m.pt2").write_bytes(b"")
    lines = [f"{k} = {_toml(v)}" for k, v in GATE_VALUES.items()]
    (tmp_path / "g.toml").write_text("[[model]]\nname = 'm'\nsource = 'm.pt2'\ntargets = ['tflite']\n" + "\n".join(lines))
    (job,), _ = jobs_from_config(str(tmp_path / "g.toml"))
    options = convert_options(job.settings)
    for key, value in GATE_VALUES.items():
        got = getattr(options, key)
        if key in ("inputs", "calibration"):
            assert got == str(tmp_path / value), key
        elif key == "dynamic":
            assert [d.label for d in got] == ["batch"]
        else:
            assert got == (tuple(value) if isinstance(value, list) else value), key
    settings = gate_settings(job.settings, options.artifact_precision)
    assert settings.threads == 1 and settings.samples == 2 and settings.seed == 3
    assert (settings.latency.warmup_runs, settings.latency.runs, settings.latency.min_seconds) == (4, 7, 0.25)
    assert settings.tolerance.precision == "fp16" and settings.per_output["y"].atol == 0.1
    from fwconv.validators.generative import GenerativeSettings

    generative = GenerativeSettings.from_options(options)
    assert (generative.prompts, generative.steps, generative.trust_remote_code) == (("hello there",), 8, True)


def test_the_gate_times_longer_by_default(tmp_path):
    from fwconv.gate.config import gate_settings

    latency = gate_settings({}, "fp32").latency
    assert (latency.warmup_runs, latency.runs) == (5, 30)
    assert gate_settings({"runs": 9}, "fp32").latency.runs == 9


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def test_api_takes_the_same_names_and_checks_types():
    o = Options(input_shape="1,3,8,8", dynamic="batch", inputs=None)
    assert o.input_shape == ("1,3,8,8",) and o.input_specs[0].shape == [1, 3, 8, 8]
    with pytest.raises(TypeError):
        Options(inputs_file="s.npz")  # one name everywhere: `inputs`
    with pytest.raises(InputError, match="'samples' must be int"):
        Options(samples="2")
    with pytest.raises(InputError, match="'opset' must be int"):
        Options(opset=True)
    with pytest.raises(InputError, match="unknown option"):
        Options.from_mapping({"threads": 1, "wat": 2}, door=PLUGIN)


@pytest.mark.slow
def test_plugin_keywords_are_the_schema_names(pytester, models_dir):
    """`fwconv_convert(src, "onnx", inputs="s.npz")` (a TypeError once: the API called it
    inputs_file) and `fwconv_assert_parity(..., inputs=...)` take the same names."""
    pytester.makepyfile(textwrap.dedent(f"""
        def test_gate(fwconv_convert, fwconv_assert_parity):
            out = fwconv_convert({str(models_dir / "mlp.pt2")!r}, "onnx", inputs={str(models_dir / "mlp.npz")!r},
                                 latency=False, stage_timeout=600)
            fwconv_assert_parity({str(models_dir / "mlp.pt2")!r}, out, inputs={str(models_dir / "mlp.npz")!r},
                                 atol=1e-4, samples=1)
    """))
    # in a subprocess: in-process, pytester drops the extension modules the run imported from
    # sys.modules, and a later import of one (onnx, torch) aborts this interpreter
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
