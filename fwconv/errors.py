"""Typed errors. The CLI maps each class to one documented exit code (EXIT_CODES, the one
table the CLI help and the gate use; the README repeats it for readers) and prints one line."""

from __future__ import annotations

import re


EXIT_CODES = {
    0: "ok (and parity passed, where validated)",
    1: "conversion or runtime error",
    2: "bad input or usage",
    3: "parity failed",
    4: "latency budget exceeded",
    5: "unsupported op (e.g. Flex)",
    6: "a converter stage ran past its time limit (--stage-timeout); nothing written",
    130: "interrupted (SIGINT)",
    143: "terminated (SIGTERM)",
}


class FwconvError(Exception):
    """Base class: carries the exit code the CLI uses for it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        msg = " ".join(str(self).split())
        return f"{msg} ({self.hint})" if self.hint else msg


class InputError(FwconvError):
    """The user's input is wrong: missing, corrupt, of the wrong format, or not fitting."""

    exit_code = 2


class OutputExistsError(InputError):
    """An output path already exists and --force was not given."""


class UnsafeModelError(InputError):
    """Loading this file would execute code from it (pickle) and trust was not granted."""


class MissingDependencyError(FwconvError):
    """An optional framework is not installed; names the extra that brings it."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"'{module}' is not installed",
            hint=f"install it with: pip install 'fwconv[{extra}]'",
        )
        self.module = module
        self.extra = extra


class ConversionError(FwconvError):
    """A conversion stage failed; `stage` names which one (export, convert, check...)."""

    def __init__(self, stage: str, message: str, *, hint: str | None = None):
        super().__init__(f"{stage} failed: {message}", hint=hint)
        self.stage = stage


class UnsupportedOpError(ConversionError):
    """The artifact would need ops the target runtime cannot run (Flex/custom ops)."""

    exit_code = 5

    def __init__(self, ops: list[str], *, stage: str = "check", hint: str | None = None,
                 target: str = "TFLite builtins"):
        super().__init__(stage, f"the model needs ops that are not {target}: " + ", ".join(sorted(ops)), hint=hint)
        self.ops = sorted(ops)


class StageTimeout(BaseException):
    """A conversion stage ran past its time limit (`--stage-timeout`, gate key `stage_timeout`).

    A BaseException, like an interrupt: converters' `except Exception` blocks and fwconv's own
    route and repair loops must not turn it into one more failed attempt. It ends the conversion."""

    exit_code = 6

    def __init__(self, stage: str, seconds: float):
        super().__init__(stage, seconds)
        self.stage, self.seconds = stage, seconds

    def one_line(self) -> str:
        return (f"{self.stage} was still running after its {self.seconds:g} s limit, so the conversion was stopped "
                "and nothing was written (raise --stage-timeout if the converter is only slow; --progress shows "
                "each stage's time)")

    def __str__(self) -> str:
        return self.one_line()


class RunnerError(FwconvError):
    """A runtime failed to load or run a model (including a crash or hang in a subprocess)."""


class ModelLoadError(InputError):
    """A runtime cannot load a model file: truncated, corrupt, or not what its content claims."""


def load_error(runtime: str, path: str, exc: BaseException) -> FwconvError:
    """A load failure is the file's fault (exit 2) unless the runtime says it lacks an
    implementation for something the file validly asks for (exit 1)."""
    text = str(exc)
    message = f"{runtime} cannot load {path}: {first_line(exc)}"
    if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
        return RunnerError(message)
    return ModelLoadError(message)


class ParityError(FwconvError):
    """A converted model does not match its reference. Carries the full report."""

    exit_code = 3

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
        self.debug = None  # the layerwise DebugReport, where --debug-on-failure asked for one


class LatencyBudgetError(FwconvError):
    """Candidate/reference latency ratio is above the budget."""

    exit_code = 4

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


def rebuild(class_name: str, message: str, exit_code: int) -> FwconvError:
    """The same error type on this side of a process boundary (isolated runners, gate workers):
    an unsupported op stays exit 5, bad input exit 2, whatever crossed the pipe."""
    cls = globals().get(class_name)
    if not (isinstance(cls, type) and issubclass(cls, FwconvError)):
        cls = FwconvError
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.hint = None
    error.exit_code = exit_code
    return error


def require(module: str, extra: str):
    """Import an optional framework lazily, or raise MissingDependencyError naming the extra."""
    import importlib
    import sys

    if module in sys.modules:
        return sys.modules[module]
    from fwconv.quiet import captured_output

    try:
        with captured_output():  # TensorFlow & co. log to stderr from C++ while importing
            return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(exc.name or module, extra) from exc


_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """Terminal colour and link codes (torch's exporter messages carry them) removed."""
    return _ANSI.sub("", text)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The line of an exception's message that says what failed.

    Usually the first; but TorchScript wraps the real error after a traceback of its own
    ("The following operation failed in the TorchScript interpreter. ... RuntimeError: ..."),
    so there the last 'SomethingError: ...' line is the one that explains. torch.onnx's dynamo
    exporter opens with advice ("Failed to export the model with torch.export. ... Next steps:")
    and puts the cause under "## Exception summary": that cause is the line kept.
    """
    lines = [line.strip() for line in strip_ansi(str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if "TorchScript interpreter" in lines[0]:
        errors = [line for line in lines if re.match(r"^[A-Za-z_.]*Error: ", line)]
        if errors:
            return errors[-1][:limit]
    if "## Exception summary" in lines[:-1]:
        cause = lines[lines.index("## Exception summary") + 1]
        step = re.match(r"^Failed to (.*?)\.(?:\s|$)", lines[0])
        cause = re.sub(r"^<class '(?:[\w]+\.)*(\w+)'>:", r"\1:", cause)  # <class 'a.b.SomeError'>: -> SomeError:
        return (f"{step[1]} failed: {cause}" if step else cause)[:limit]
    return lines[0][:limit]
