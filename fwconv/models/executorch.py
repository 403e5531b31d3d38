"""ExecuTorch programs (.pte): open them in the runtime, and read what the file says.

The runtime's exceptions only carry an error code ("Failed to load program, error: 0x:23"); the
reason is in its log lines on stderr ("[program.cpp:114] File size is too small ..."). Each call
into the runtime is captured, and the log line that explains becomes the message: a file that
does not load is bad input (exit 2), a kernel the runtime lacks is an unsupported op (exit 5).
Input/output names are not part of a .pte; fwconv stores them in a constant method (IO_METHOD).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Callable

from fwconv.errors import FwconvError, InputError, ModelLoadError, RunnerError, UnsupportedOpError, first_line, require
from fwconv.quiet import captured_output
from fwconv.specs import TensorSpec

IO_METHOD = "fwconv_io"  # constant method fwconv adds: JSON {"inputs": [names], "outputs": [names]}
# ExecuTorch's ScalarType codes (runtime/core/portable_type/scalar_type.h) as numpy dtype names.
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool", 15: "bfloat16"}
_LOG_LINE = re.compile(r"^\[[\w.]+:\d+\] (?P<text>.+)$")
_MISSING_OP = re.compile(r"Missing operator: \[\d+\] (?P<op>\S+)")
_KERNEL_NOT_FOUND = re.compile(r"kernel '(?P<op>[^']+)' not found")


def _runtime():
    module = require("executorch.runtime", "executorch")
    with captured_output():
        return module.Runtime.get()


def _reason(log: str, exc: BaseException) -> str:
    lines = [m["text"].strip() for line in log.splitlines() if (m := _LOG_LINE.match(line.strip()))]
    lines = [text for text in lines if not text.startswith(("Reading file", "Failed to open midr", "CPU info"))]
    return lines[0] if lines else first_line(exc)


def runtime_call(fn: Callable[[], Any], failure: Callable[[str, BaseException], FwconvError]) -> Any:
    """Call into the runtime with its log captured; on failure raise `failure(reason, exc)`,
    or UnsupportedOpError when the log names operators the runtime has no kernel for."""
    with captured_output() as cap:
        try:
            return fn()
        except Exception as exc:  # the pybindings raise RuntimeError with an error code only
            error = exc
    missing = sorted(set(_MISSING_OP.findall(cap.text)) or set(_KERNEL_NOT_FOUND.findall(cap.text)))
    if missing:
        raise UnsupportedOpError(missing, stage="load", target="kernels of this ExecuTorch runtime",
                                 hint="export without that op, or link a runtime with its kernel") from error
    raise failure(_reason(cap.text, error), error) from error


def open_program(path: str):
    runtime = _runtime()
    return runtime_call(lambda: runtime.load_program(path),
                        lambda why, exc: ModelLoadError(f"ExecuTorch cannot load {path}: {why}"))


def load_method(program, name: str, path: str):
    if name not in program.method_names:
        raise InputError(f"{path} has no method '{name}' (methods: {', '.join(sorted(program.method_names))})")
    return runtime_call(lambda: program.load_method(name),
                        lambda why, exc: ModelLoadError(f"ExecuTorch cannot load method '{name}' of {path}: {why}"))


def execute(method, args: list, path: str) -> list:
    """Run a loaded method; inputs that do not fit are the user's (exit 2), the rest a runtime failure."""
    def failure(why: str, exc: BaseException) -> FwconvError:
        if "set_inputs" in str(exc):
            return InputError(f"the inputs do not fit {path}: {why}")
        return RunnerError(f"ExecuTorch failed to run {path}: {why}")

    return runtime_call(lambda: method.execute(args), failure)


def io_names(program, path: str) -> dict[str, list[str]] | None:
    """The source's input/output names, when fwconv wrote the program (None otherwise)."""
    if IO_METHOD not in program.method_names:
        return None
    (text,) = execute(load_method(program, IO_METHOD, path), [], path)
    try:
        names = json.loads(text)
        found = {side: [str(n) for n in names[side]] for side in ("inputs", "outputs")}
        found["dynamic"] = {str(k): [int(d) for d in v] for k, v in names.get("dynamic", {}).items()}
        return found
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


RUNNER_PREFIXES = ("get_", "use_", "enable_")  # ExecuTorch's LLM runner's constant methods


def runner_constants(program, path: str) -> dict[str, Any]:
    """The values of the program's LLM-runner constant methods (get_max_seq_len, use_kv_cache...)."""
    return {n: execute(load_method(program, n, path), [], path)[0] for n in sorted(program.method_names)
            if n.startswith(RUNNER_PREFIXES)}


def _specs(meta, side: str, names: list[str] | None, dynamic: dict | None = None) -> list[TensorSpec]:
    """Tensor specs; a dim fwconv exported dynamic (bounded) reads None, not its upper bound."""
    count = meta.num_inputs() if side == "inputs" else meta.num_outputs()
    read = meta.input_tensor_meta if side == "inputs" else meta.output_tensor_meta
    prefix = side[:-1]
    specs = []
    for i in range(count):
        name = names[i] if names and i < len(names) else f"{prefix}_{i}"
        try:
            info = read(i)
        except Exception:  # a non-tensor value (int, bool): no tensor meta
            specs.append(TensorSpec(name, [], "scalar"))
            continue
        open_dims = (dynamic or {}).get(name, [])
        shape = [None if k in open_dims else int(d) for k, d in enumerate(info.sizes())]
        specs.append(TensorSpec(name, shape, SCALAR_TYPES.get(int(info.dtype()), str(info.dtype()))))
    return specs


def read_io(path: str, program=None, method: str = "forward") -> dict[str, Any]:
    """Methods and one method's inputs/outputs (names from fwconv's IO method, else by position)."""
    program = program or open_program(path)
    methods = sorted(m for m in program.method_names if m != IO_METHOD)
    if method not in program.method_names:
        raise InputError(f"{path} has no method '{method}' (methods: {', '.join(methods)})")
    meta = runtime_call(lambda: program.metadata(method),
                        lambda why, exc: ModelLoadError(f"ExecuTorch cannot read method '{method}' of {path}: {why}"))
    names = (io_names(program, path) if method == "forward" else None) or {}
    return {"methods": methods, "inputs": _specs(meta, "inputs", names.get("inputs"), names.get("dynamic")),
            "outputs": _specs(meta, "outputs", names.get("outputs")),
            "named_by": "fwconv" if names else "position", "capacity": _capacity(meta)}


def _capacity(meta) -> list[list[int] | None]:
    """Each input's allocated sizes: a bounded dynamic dim's upper bound, as the program has it."""
    found = []
    for i in range(meta.num_inputs()):
        try:
            found.append([int(d) for d in meta.input_tensor_meta(i).sizes()])
        except Exception:  # a non-tensor value
            found.append(None)
    return found


def program_contents(path: str) -> dict[str, dict[str, Any]]:
    """Per method: calls into delegates (by backend id) and the kernels the runtime must provide
    (operators outside any delegate), read from the program's flatbuffer."""
    serialize = require("executorch.exir._serialize._program", "executorch")
    with open(path, "rb") as f:
        data = f.read()
    try:
        program = serialize.deserialize_pte_binary(data).program
    except Exception as exc:
        raise ModelLoadError(f"cannot read the ExecuTorch program in {path}: {first_line(exc)}") from exc
    out = {}
    for plan in program.execution_plan:
        if plan.name == IO_METHOD:
            continue
        delegates, kernels = Counter(), Counter()
        for chain in plan.chains:
            for instruction in chain.instructions:
                args = instruction.instr_args
                if hasattr(args, "delegate_index"):
                    delegates[plan.delegates[args.delegate_index].id] += 1
                elif hasattr(args, "op_index"):
                    op = plan.operators[args.op_index]
                    kernels[f"{op.name}.{op.overload}" if op.overload else op.name] += 1
        out[plan.name] = {"delegate_calls": dict(sorted(delegates.items())), "kernels": dict(sorted(kernels.items()))}
    return out


def delegation_line(ops: dict[str, Any]) -> str:
    """One line for people: how much the delegate took, what runs on the runtime's kernels."""
    parts = []
    if "delegated" in ops:
        taken, left = sum(ops["delegated"].values()), sum(ops.get("portable", {}).values())
        backend = ops.get("backend") or "no delegate"
        parts.append(f"{taken} of {taken + left} delegated to {backend} "
                     f"({ops.get('delegated_subgraphs', 0)} subgraph(s))")
    calls = ops.get("delegate_calls") or {}
    if calls:
        parts.append("delegate calls: " + ", ".join(f"{k}×{v}" for k, v in calls.items()))
    kernels = ops.get("kernels") or {}
    parts.append("kernels: " + (", ".join(f"{k}×{v}" for k, v in kernels.items()) or "none"))
    return "; ".join(parts)
