"""Conversion options, normalised and checked once, on construction, whoever builds them: the
CLI, the gate, the Python API, the pytest plugin. `--fp16` is `quantize="fp16"`; contradictions
and missing calibration are one clear InputError (exit 2) before any model loads."""

from __future__ import annotations

import dataclasses

from fwconv.convert.repair import DEFAULT_BUDGET_S
from fwconv.errors import InputError
from fwconv.specs import TensorSpec, specs_from_options

CHOICES = {"quantize": (None, "fp16", "dynamic", "int8"), "via": ("auto", "best", "onnx", "litert"),
           "layout": ("source", "nhwc", "nchw"), "exporter": ("auto", "dynamo", "torchscript"),
           "outputs": ("auto", "tuple", "dict"), "backend": (None, "xnnpack", "portable", "auto")}
PRECISION_OF_QUANTIZE = {None: "fp32", "fp16": "fp16", "dynamic": "int8", "int8": "int8"}


@dataclasses.dataclass
class ConvertOptions:
    opset: int = 18
    fp16: bool = False  # the same as quantize="fp16" (normalised on construction)
    quantize: str | None = None  # None | "fp16" | "dynamic" | "int8"
    int8_io: bool = False  # with quantize="int8": int8 input/output tensors too
    calibration: str | None = None  # .npz or a folder of .npz/.npy samples, for quantize="int8"
    via: str = "auto"  # several routes: auto (first that passes, in preference order) | best (every route,
    # the fastest that passes) | onnx | litert
    layout: str = "source"  # "source" keeps the source's I/O layout; "nhwc" opts into channel-last
    allow_flex: bool = False
    exporter: str = "auto"  # torch->onnx: auto | dynamo | torchscript
    trust_pickle: bool = False
    force: bool = False
    validate: bool = True
    keep_failed: bool = False  # publish an artifact that failed parity (exit code still 3)
    input_specs: list[TensorSpec] = dataclasses.field(default_factory=list)
    inputs_file: str | None = None
    input_ranges: tuple[str, ...] = ()
    outputs: str = "auto"  # -> torch: auto (tensor / tuple, or dict where the source returns one) | tuple | dict
    debug_on_failure: bool = False  # a parity failure runs the layerwise debugger (ParityError.debug)
    repair: bool = True  # when no route passes parity, try the repairs in convert/repair.py
    repair_budget: float = DEFAULT_BUDGET_S  # seconds all repair attempts may take together
    min_cosine: float | None = None  # selective quantization's target: the verdict's cosine floor
    max_float_ops: int | None = None  # selective quantization's bound on ops kept in float (None: 16)
    backend: str | None = None  # -> pte: xnnpack (the default) | portable | auto (both, keep the fastest that passes)

    dynamic: tuple = ()  # fwconv.dynamic.DynamicDim: dims that stay variable (`--dynamic`)

    def __post_init__(self) -> None:
        if self.fp16 and self.quantize not in (None, "fp16"):
            raise InputError(f"--fp16 and --quantize {self.quantize} contradict each other")
        if self.fp16:
            self.quantize = "fp16"
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"unknown {name} '{getattr(self, name)}'",
                                 hint=f"choose one of: {', '.join(str(a) for a in allowed if a)}")
        if self.int8_io and self.quantize != "int8":
            raise InputError("--int8-io goes with --quantize int8")
        if self.quantize == "int8" and not self.calibration:
            raise InputError("--quantize int8 needs calibration data: --calibration FILE.npz (or a folder of samples)",
                             hint="fwconv never calibrates on random data silently")
        if not (isinstance(self.repair_budget, (int, float)) and 0 < self.repair_budget < float("inf")):
            raise InputError(f"--repair-budget {self.repair_budget!r} must be a positive number of seconds")
        self._check_quantization_targets()
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not 7 <= self.opset <= 23:
            raise InputError(f"--opset {self.opset!r} is not an ONNX opset fwconv can export (7..23)")
        self._normalise_dynamic()

    def _normalise_dynamic(self) -> None:
        """`dynamic` as DynamicDims, whether given parsed or as the user's words ('batch', 'x:1=seq')."""
        from fwconv.dynamic import DynamicDim, parse_dynamic

        given = (self.dynamic,) if isinstance(self.dynamic, (str, DynamicDim)) else tuple(self.dynamic or ())
        self.dynamic = given if all(isinstance(d, DynamicDim) for d in given) else parse_dynamic(given)

    def _check_quantization_targets(self) -> None:
        """--min-cosine in (0, 1]; --max-float-ops a count (0: full int8 only), with --quantize int8."""
        c = self.min_cosine
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 1):
            raise InputError(f"--min-cosine {c!r} must be a number in (0, 1]")
        n = self.max_float_ops
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise InputError(f"--max-float-ops {n!r} must be a whole number >= 0")
        if n is not None and self.quantize != "int8":
            raise InputError("--max-float-ops goes with --quantize int8 (ops kept in float by selective quantization)")

    @classmethod
    def from_strings(cls, input_shapes=(), input_dtypes=(), dynamic=(), **options) -> "ConvertOptions":
        """From the user's words: `--input-shape [NAME:]D0,D1`, `--input-dtype [NAME:]DTYPE` and
        `--dynamic batch[:MIN..MAX]|NAME:DIM[=LABEL][:MIN..MAX]`."""
        words = lambda v: (v,) if isinstance(v, str) else tuple(v or ())  # one word is not its letters
        return cls(input_specs=specs_from_options(words(input_shapes), words(input_dtypes)), dynamic=dynamic,
                   **options)  # the dynamic words are parsed on construction (_normalise_dynamic)

    @property
    def precision(self) -> str:
        """The candidate precision the validator's default thresholds are chosen for."""
        return PRECISION_OF_QUANTIZE[self.quantize]
