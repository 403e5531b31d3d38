"""Every user-facing option, declared once: name, type, default, help text and the doors it
opens on. The command-line options (fwconv.cli), the gate's TOML keys and types
(fwconv.gate.config), the Python API (`Options(...)`, `Options.from_mapping`) and the pytest
plugin's keywords are all generated from these declarations, with one name per option
everywhere (`input_shape` is `--input-shape` on the command line, `input_shape = [...]` in a
gate config and `input_shape=` in Python). A new option is one field here.

`Options` holds what one model's conversion and validation take (inputs, validation,
conversion, generation); `CommandOptions` what only a command line has (output paths, report
files, the gate run's flags, global switches). Both are plain dataclasses whose fields carry
their door metadata; `Options` checks and normalises its values on construction, so every
door gets the same one-line errors (exit 2) before any model loads.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from fwconv.errors import InputError

# Doors: where an option appears. CONVERT = every conversion command; GATE = a gate config key;
# PLUGIN = the pytest plugin's keywords. The Python API (Options) takes every field.
CONVERT, VALIDATE, DEBUG, INSPECT, GATE, GATE_CLI, GLOBAL, PLUGIN = (
    "convert", "validate", "debug", "inspect", "gate", "gate-cli", "global", "plugin")
CONVERT_TO = "convert-to"  # `fwconv convert` alone: the target format
GOLDEN = "golden"  # `fwconv golden save|update`
COMPARE = frozenset({CONVERT, VALIDATE, DEBUG, GATE, PLUGIN})  # input and validation options

REPAIR_BUDGET_S = 600.0  # all repair attempts of one conversion together
STAGE_TIMEOUT_S = 1800.0  # one converter stage (see README: time limits)


@dataclasses.dataclass(frozen=True)
class Door:
    """How one field is exposed. `flag`: the command-line spelling when it is not `--name`
    ("--no-validate" for a default-True switch, "--isolate/--in-process" for a pair);
    `types`: the Python types a config or the API may give (derived from the default when
    empty); `repeat`: a repeatable word (a tuple; one string is one word); `gate_default`: the
    gate's own default where timing in CI wants more runs."""

    help: str
    doors: frozenset
    group: str = "conversion"
    flag: str | None = None
    short: str | None = None
    metavar: str | None = None
    choices: tuple | None = None
    repeat: bool = False
    types: tuple = ()
    path: str | None = None  # "file" (not a directory) | "any"
    minimum: float | None = None  # click.FloatRange(min=..., min_open=True)
    gate_default: Any = None  # None: the declared default
    required: bool = False  # the command line refuses to run without it


def opt(default: Any, help: str, doors: Iterable[str], **meta: Any):
    """A dataclass field with its door metadata (the declaration the doors are generated from)."""
    door = Door(help=help, doors=frozenset(doors), **meta)
    if isinstance(default, (list, dict)):
        raise TypeError("option defaults are immutable (tuples)")
    return dataclasses.field(default=default, metadata={"fwconv": door})


def door_of(field: dataclasses.Field) -> Door:
    return field.metadata["fwconv"]


WORDS = (list, tuple, str)
NUMBER = (int, float)


@dataclasses.dataclass
class Options:
    """One model's conversion and validation options (see the module docstring)."""

    # -- inputs ------------------------------------------------------------------------------
    inputs: str | None = opt(None, "Sample inputs (.npz). Arrays feed inputs in file order; matching names win.",
                             COMPARE, group="input", path="file", metavar="FILE.npz")
    # inspect takes the sample's inputs too: a TorchScript .pt is tried through TS2EP at that sample
    input_shape: tuple = opt((), "Input shape, repeatable (positional, or name:shape).", COMPARE | {INSPECT},
                             group="input", repeat=True, metavar="[NAME:]D0,D1,..")
    input_dtype: tuple = opt((), "Input dtype (default float32), e.g. input_ids:int64.", COMPARE | {INSPECT},
                             group="input", repeat=True, metavar="[NAME:]DTYPE")
    input_range: tuple = opt((), "Value range for synthetic inputs (integers: HIGH exclusive).", COMPARE | {INSPECT},
                             group="input", repeat=True, metavar="[NAME:]LOW,HIGH")
    dynamic: tuple = opt((), "A dim that stays variable (repeatable; a shared LABEL ties dims): conversions keep it "
                             "dynamic where the route can, and parity is checked at several sizes. A MAX whose inputs "
                             "would pass the --max-size cap is refused before anything loads (exit 2).",
                         COMPARE, group="input", repeat=True, metavar="batch[:MIN..MAX]|NAME:DIM[=LABEL][:MIN..MAX]")
    # -- validation --------------------------------------------------------------------------
    samples: int = opt(1, "Number of seeded input sets to compare.", COMPARE, group="validation")
    seed: int = opt(0, "Seed for synthetic inputs.", COMPARE, group="validation")
    atol: float | None = opt(None, "Absolute tolerance (default: precision-based, scaled to each output).", COMPARE,
                             group="validation", types=NUMBER)
    rtol: float | None = opt(None, "Relative tolerance (default: precision-based).", COMPARE, group="validation",
                             types=NUMBER)
    tolerance: Any = opt((), "Per-output tolerance override, repeatable (a config takes a table: {logits = 1e-3}).",
                         COMPARE, group="validation", repeat=True, metavar="OUTPUT=ATOL[,RTOL]", types=WORDS + (dict,))
    precision: str | None = opt(None, "Candidate precision for default tolerances (default: from the artifact).",
                                COMPARE, group="validation", choices=("fp32", "fp16", "int8"))
    map: tuple = opt((), "Pair a reference tensor with a candidate tensor (and its layout).", COMPARE,
                     group="validation", repeat=True, metavar="REF=CAND[:nhwc]")
    threads: int | None = opt(None, "Threads for each runtime (a gate's workers split the cores by default).", COMPARE,
                              group="validation", types=(int,))
    warmup: int = opt(3, "Warm-up runs before timing.", COMPARE, group="validation", gate_default=5)
    warmup_seconds: float = opt(0.0, "Keep warming up for at least this long.", COMPARE, group="validation",
                                types=NUMBER)
    runs: int = opt(20, "Timed runs (at least).", COMPARE, group="validation", gate_default=30)
    min_seconds: float = opt(0.0, "Keep timing for at least this long.", COMPARE, group="validation", types=NUMBER)
    latency: bool = opt(True, "Measure latency (--no-latency skips it).", COMPARE, group="validation",
                        flag="--no-latency")
    max_latency_ratio: float | None = opt(None, "Fail (exit 4) if candidate/reference p50 is above this.", COMPARE,
                                          group="validation", types=NUMBER)
    # -- language models (a Hugging Face model directory) ------------------------------------
    prompt: tuple = opt((), "Prompt for the token-by-token check of a language model, repeatable (default: three "
                            "built-in prompts).", COMPARE, group="generation", repeat=True, metavar="TEXT")
    decode_steps: int = opt(32, "Decode steps checked per prompt (language models).", COMPARE, group="generation")
    trust_remote_code: bool = opt(False, "Let a model directory run its own modelling code (transformers' "
                                         "trust_remote_code).", COMPARE, group="generation")
    prefill_length: tuple = opt((), "Prefill signature length of a language model artifact, repeatable (default 32).",
                                {CONVERT, GATE, PLUGIN}, group="generation", repeat=True, metavar="N")
    cache_length: int | None = opt(None, "KV cache length of a language model artifact (default 128, or the model's "
                                         "context if shorter).", {CONVERT, GATE, PLUGIN}, group="generation",
                                   types=(int,))
    recipe: str | None = opt(None, "litert-torch quantization recipe for a language model (e.g. dynamic_wi8_afp32, "
                                   "weight_only_wi8_afp32, dynamic_wi4_afp32); --quantize dynamic is dynamic_wi8_afp32. "
                                   "Default: none (float).", {CONVERT, GATE, PLUGIN}, group="generation")
    # -- conversion --------------------------------------------------------------------------
    opset: int = opt(18, "ONNX opset for the export.", {CONVERT, GATE, PLUGIN})
    exporter: str = opt("auto", "PyTorch->ONNX exporter (auto tries dynamo, then TorchScript).", {CONVERT, GATE, PLUGIN},
                        choices=("auto", "dynamo", "torchscript"))
    fp16: bool = opt(False, "Half-precision weights (.tflite); same as --quantize fp16.", {CONVERT, GATE, PLUGIN})
    quantize: str | None = opt(None, "TFLite quantization: fp16 weights, dynamic (int8 weights), int8 (full integer; "
                                     "needs --calibration).", {CONVERT, GATE, PLUGIN},
                               choices=("fp16", "dynamic", "int8"))
    calibration: str | None = opt(None, "Calibration samples for --quantize int8 (.npz with a leading sample axis, or "
                                        "a folder of .npz/.npy samples).", {CONVERT, GATE, PLUGIN}, path="any")
    int8_io: bool = opt(False, "With --quantize int8: int8 input/output tensors too.", {CONVERT, GATE, PLUGIN})
    min_cosine: float | None = opt(None, "Cosine floor the artifact must reach (default: the precision's); with "
                                         "--quantize int8 the target of selective quantization.",
                                   {CONVERT, GATE, PLUGIN}, types=NUMBER)
    max_float_ops: int | None = opt(None, "With --quantize int8: at most this many ops kept in float when full int8 "
                                          "fails (default 16; 0: full int8 only).", {CONVERT, GATE, PLUGIN},
                                    types=(int,))
    via: str = opt("auto", "PyTorch->TFLite route: ONNX+onnx2tf, litert-torch, auto (litert-torch first, the ONNX route "
                           "only if it fails) or best (both, keep the fastest that passes).", {CONVERT, GATE, PLUGIN},
                   choices=("auto", "best", "onnx", "litert"))
    backend: str | None = opt(None, "ExecuTorch (.pte) backend: the XNNPACK delegate (default), portable kernels only, "
                                    "or auto (convert both, keep the fastest that passes).", {CONVERT, GATE, PLUGIN},
                              choices=("xnnpack", "portable", "auto"))
    layout: str = opt("source", "I/O layout of the artifact: the source's (NCHW stays NCHW, NHWC stays NHWC), "
                                "channel-last (PyTorch/ONNX -> TFLite/SavedModel) or channel-first (TF -> ONNX/PyTorch).",
                      {CONVERT, GATE, PLUGIN}, choices=("source", "nhwc", "nchw"))
    outputs: str = opt("auto", "What a converted PyTorch module returns: auto (a tensor, or a tuple in the source's "
                               "order; a dict where the source returns one), tuple, or dict by output name.",
                       {CONVERT, GATE, PLUGIN}, choices=("auto", "tuple", "dict"))
    allow_flex: bool = opt(False, "Allow Select-TF (Flex) ops instead of failing.", {CONVERT, GATE, PLUGIN})
    trust_pickle: bool = opt(False, "Allow the model file to run code: pickled Python objects, Keras Lambda layers.",
                             {CONVERT, VALIDATE, DEBUG, INSPECT, PLUGIN})
    validate: bool = opt(True, "Validate the artifact against the source (--no-validate skips it).", {CONVERT, PLUGIN},
                         flag="--no-validate")
    keep_failed: bool = opt(False, "Write the artifact even if it fails parity (exit 3 still).", {CONVERT, PLUGIN})
    repair: bool = opt(True, "When the artifact fails parity, try the repairs (other converter settings, the other "
                             "exporter, an opset upgrade; see README); --no-repair does not.", {CONVERT, GATE, PLUGIN},
                       flag="--no-repair")
    repair_budget: float = opt(REPAIR_BUDGET_S, "Seconds all repair attempts may take together.",
                               {CONVERT, GATE, PLUGIN}, types=NUMBER)
    debug_on_failure: bool = opt(False, "On a parity failure, run `fwconv debug` on the source and the failed artifact "
                                        "and write OUTPUT.debug.json/.html (first diverging op, named on both sides).",
                                 {CONVERT, GATE, GATE_CLI, PLUGIN})
    reduce: bool = opt(False, "On a parity failure of an onnx2tf conversion, cut the ONNX graph (a PyTorch source's "
                              "own export) to the smallest subgraph onnx2tf still gets wrong, each cut re-converted "
                              "for real, and write a repro bundle (OUTPUT.repro/; debug: -o DIR).",
                       {CONVERT, DEBUG, GATE}, group="reduce")
    reduce_budget: float = opt(300.0, "Seconds --reduce may spend re-converting cuts.", {CONVERT, DEBUG, GATE},
                               group="reduce", types=NUMBER, minimum=0)
    stage_timeout: float = opt(STAGE_TIMEOUT_S, "Seconds one converter stage (export, convert, quantize, validate...) "
                                                "may run; past it the conversion ends (exit 6), nothing written.",
                               {CONVERT, GATE, PLUGIN}, types=NUMBER, minimum=0)
    force: bool = opt(False, "Replace existing outputs (a file, or a directory fwconv wrote); never an input.",
                      {CONVERT, VALIDATE, DEBUG, GATE_CLI, PLUGIN}, group="output")

    def __post_init__(self) -> None:
        check_types(self, "option")
        if self.fp16 and self.quantize not in (None, "fp16"):
            raise InputError(f"--fp16 and --quantize {self.quantize} contradict each other")
        if self.fp16:
            self.quantize = "fp16"
        for f in fields(self):
            door, value = door_of(f), getattr(self, f.name)
            if door.choices and value is not None and value not in door.choices:
                raise InputError(f"unknown {f.name} '{value}'", hint=f"choose one of: {', '.join(door.choices)}")
        self._check_conversion()
        self._check_quantization_targets()
        self._check_generation()
        from fwconv.dynamic import DynamicDim, parse_dynamic

        given = self.dynamic
        if not all(isinstance(d, DynamicDim) for d in given):  # the user's words, parsed once
            self.dynamic = parse_dynamic(given)
        from fwconv.specs import specs_from_options

        self.input_specs = specs_from_options(self.input_shape, self.input_dtype)

    def _check_conversion(self) -> None:
        if self.int8_io and self.quantize != "int8":
            raise InputError("--int8-io goes with --quantize int8")
        if self.quantize == "int8" and not self.calibration:
            raise InputError("--quantize int8 needs calibration data: --calibration FILE.npz (or a folder of samples)",
                             hint="fwconv never calibrates on random data silently")
        if not 0 < self.repair_budget < float("inf"):
            raise InputError(f"--repair-budget {self.repair_budget!r} must be a positive number of seconds")
        if not 0 < self.stage_timeout < float("inf"):
            raise InputError(f"--stage-timeout {self.stage_timeout!r} must be a positive number of seconds")
        if not 7 <= self.opset <= 23:
            raise InputError(f"--opset {self.opset!r} is not an ONNX opset fwconv can export (7..23)")

    def _check_generation(self) -> None:
        """Prefill lengths are whole numbers >= 1 (words from a command line, numbers from a config)."""
        try:
            lengths = tuple(int(v) for v in self.prefill_length)
        except (TypeError, ValueError):
            raise InputError(f"--prefill-length {list(self.prefill_length)} must be whole numbers") from None
        if any(n < 1 for n in lengths):
            raise InputError(f"--prefill-length {min(lengths)} must be >= 1")
        if self.cache_length is not None and self.cache_length < 2:
            raise InputError(f"--cache-length {self.cache_length} must be >= 2 (a prompt token and a generated one)")
        if self.decode_steps < 1:
            raise InputError(f"--decode-steps {self.decode_steps} must be >= 1")
        self.prefill_length = tuple(sorted(set(lengths)))

    def _check_quantization_targets(self) -> None:
        """--min-cosine in (0, 1]; --max-float-ops a count (0: full int8 only), with --quantize int8."""
        c, n = self.min_cosine, self.max_float_ops
        if c is not None and not 0 < c <= 1:
            raise InputError(f"--min-cosine {c!r} must be a number in (0, 1]")
        if n is not None and n < 0:
            raise InputError(f"--max-float-ops {n!r} must be a whole number >= 0")
        if n is not None and self.quantize != "int8":
            raise InputError("--max-float-ops goes with --quantize int8 (ops kept in float by selective quantization)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, door: str | None = None, where: str = "options") -> "Options":
        """From a config table or keywords: known names only (those of `door`, when given), each
        of its declared type; a gate's own defaults (more timing runs) where it sets none."""
        allowed = {f.name for f in fields(cls) if door is None or door in door_of(f).doors}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise InputError(f"{where}: unknown option(s) {', '.join(unknown)}",
                             hint=f"allowed: {', '.join(sorted(allowed))}")
        return cls(**{**door_defaults(door), **values})

    @property
    def artifact_precision(self) -> str:
        """The precision the conversion makes (from --quantize): the validator's default thresholds."""
        if self.recipe:
            return "int8"  # litert-torch's recipes store integer weights (8, 4 or 2 bits)
        return {None: "fp32", "fp16": "fp16", "dynamic": "int8", "int8": "int8"}[self.quantize]


def fields(cls_or_obj) -> tuple[dataclasses.Field, ...]:
    """The declared options (fields that carry door metadata)."""
    return tuple(f for f in dataclasses.fields(cls_or_obj) if "fwconv" in f.metadata)


def accepted_types(field: dataclasses.Field) -> tuple:
    door = door_of(field)
    if door.types:
        return door.types
    if door.repeat:
        return WORDS
    if isinstance(field.default, bool):
        return (bool,)
    if isinstance(field.default, float):
        return NUMBER
    return (type(field.default),) if field.default is not None else (str,)


def check_types(obj, where: str) -> None:
    """Each value of the declared type (None where the default is None); a repeatable word given
    as one string becomes a one-word tuple; a bool is never a number."""
    for f in fields(obj):
        value, types = getattr(obj, f.name), accepted_types(f)
        if value is None and f.default is None:
            continue
        if door_of(f).repeat and isinstance(value, (str, list)):
            value = (value,) if isinstance(value, str) else tuple(value)
            setattr(obj, f.name, value)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise InputError(f"{where} '{f.name}' must be {names}, not {type(value).__name__} ({value!r})")
        if isinstance(value, int) and not isinstance(value, bool) and float in types:
            setattr(obj, f.name, float(value))


@dataclasses.dataclass
class CommandOptions:
    """Options only a command line has: where outputs and reports go, how a comparison runs,
    the gate run's and the process's switches. Declared here so every command's flags come from
    one place (the test that walks the CLI finds nothing else)."""

    to: str | None = opt(None, "onnx | tflite | savedmodel | torch | pte | litertlm", {CONVERT_TO}, group="output",
                         metavar="FORMAT", required=True)
    output: str | None = opt(None, "Output file (.onnx/.tflite/.pte/.pt) or directory (SavedModel).", {CONVERT},
                             group="output", short="-o", path="any")
    json: str | None = opt(None, "Write the report as JSON.", {CONVERT, VALIDATE, DEBUG, GATE_CLI}, group="output",
                           path="file")
    junit: str | None = opt(None, "Write the report as JUnit XML.", {CONVERT, VALIDATE, DEBUG, GATE_CLI},
                            group="output", path="file")
    markdown: str | None = opt(None, "Write a Markdown summary.", {CONVERT, VALIDATE, DEBUG, GATE_CLI}, group="output",
                               path="file")
    html: str | None = opt(None, "Write a self-contained HTML report (plots; one offline file; needs fwconv[report]).",
                           {CONVERT, VALIDATE, DEBUG, GATE_CLI}, group="output", path="file")
    device: str = opt("cpu", "Where PyTorch and ONNX Runtime run.", {VALIDATE, DEBUG}, group="run",
                      choices=("cpu", "cuda"))
    isolate: bool = opt(True, "Run each model in its own process (crash/hang safe, per-runner peak memory).",
                        {VALIDATE}, group="run", flag="--isolate/--in-process")
    timeout: float = opt(600.0, "Seconds each isolated runner may take per step.", {VALIDATE}, group="run",
                         minimum=0)
    isolate_ops: bool = opt(False, "Also run each candidate op alone on the reference's inputs (ONNX candidates), so an "
                                   "op wrong by itself stands out from the error it inherits.", {DEBUG}, group="run")
    model_explorer: str | None = opt(None, "Write per-op errors as Model Explorer node data (colour the candidate's "
                                           "graph).", {DEBUG}, group="output", path="file")
    top: int = opt(10, "Rows of the worst tensor pairs to print.", {DEBUG}, group="run")
    reduce_output: str | None = opt(None, "Where --reduce writes the bundle (default: CANDIDATE.repro/ beside it).",
                                    {DEBUG}, group="reduce", flag="--output", short="-o", path="any", metavar="DIR")
    print_json: bool = opt(False, "Print JSON instead of text.", {INSPECT}, group="output", flag="--json")
    jobs: int = opt(1, "Model x target jobs to run in parallel processes.", {GATE_CLI}, group="gate")
    executor: str = opt("local", "Run jobs as local processes or as Ray tasks.", {GATE_CLI}, group="gate",
                        choices=("local", "ray"))
    ray_address: str | None = opt(None, "Ray cluster address for --executor ray (default: a local instance).",
                                  {GATE_CLI}, group="gate")
    model: tuple = opt((), "Only these models (repeatable).", {GATE_CLI, GOLDEN}, group="gate", repeat=True)
    check_only: bool = opt(False, "Do not convert: validate the artifacts already in the output dir.", {GATE_CLI},
                           group="gate")
    cache: bool = opt(True, "Reuse results of jobs nothing they depend on changed (--no-cache runs every job).",
                      {GATE_CLI}, group="gate", flag="--no-cache")
    baseline: str | None = opt(None, "Latency baseline to check for regressions.", {GATE_CLI}, group="gate",
                               path="any")
    save_baseline: str | None = opt(None, "Write this run's latencies as the new baseline.", {GATE_CLI}, group="gate",
                                    path="any")
    regression_threshold: float = opt(0.25, "Least relative p50 increase that counts as a regression (raised for "
                                            "noisy timings).", {GATE_CLI}, group="gate")
    debug: bool = opt(False, "Show tracebacks and the converters' own logs.", {GLOBAL}, group="global")
    max_size: str | None = opt(None, "Largest archive member or tensor an input file may declare (default 16G; 'none' "
                                     "lifts the cap). Larger ones are refused (exit 2).", {GLOBAL}, group="global",
                               metavar="SIZE")
    progress: bool | None = opt(None, "Show long steps on stderr: live on a terminal, plain lines otherwise (default: on "
                                      "a terminal or with CI=true; also FWCONV_PROGRESS=0/1).", {GLOBAL},
                                group="global", flag="--progress/--no-progress")


def door_defaults(door: str | None) -> dict[str, Any]:
    """A door's own defaults where they differ from the declared ones (the gate times longer)."""
    if door != GATE:
        return {}
    return {f.name: door_of(f).gate_default for f in fields(Options) if door_of(f).gate_default is not None}


def names_for(door: str) -> list[str]:
    """Every option name (Options and CommandOptions) that opens on `door`."""
    return [f.name for cls in (Options, CommandOptions) for f in fields(cls) if door in door_of(f).doors]


def split(values: Mapping[str, Any]) -> tuple[dict, dict]:
    """A command's keyword values: (those for Options, the command line's own)."""
    own = {f.name for f in fields(Options)}
    return {k: v for k, v in values.items() if k in own}, {k: v for k, v in values.items() if k not in own}
