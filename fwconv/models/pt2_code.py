"""The parts of a PyTorch archive that its loader turns into running code without any pickle.

In a `.pt2`, torch.export.load:

- AOTInductor members (`data/aotinductor/...`): shared libraries it dlopen()s;
- symbolic shape expressions (`expr_str` in models/*.json): parsed with sympy's sympify, which
  evaluates Python;
- `guards_code` (models/*.json): Python source it exec()s into the unlifted module.

In a TorchScript `.pt`, the code is torch ops, run when the model runs; a few of them read or
write files (torch.from_file, torch.save/load) or call custom op libraries: refused.

An exported model needs none of that to be converted: AOTInductor members are refused outright;
expressions and guards must be plain arithmetic over shape symbols (checked on the syntax tree:
names from a small allowlist, numbers, `Symbol('s0', positive=True, integer=True)`), or the file
is refused. `--trust-pickle` (trusting the file's author) lifts this, as for pickles.
"""

from __future__ import annotations

import ast
import json
import re
import zipfile
from typing import Any, Iterator

from fwconv.limits import check_declared

_SYMBOL = re.compile(r"[a-z]+\d+")
_FILE_OPS = re.compile(r"\b(torch\.from_file|torch\.save|torch\.load|torch\.ops\.(?!aten\b|prim\b|quantized\b)\w+)")
# sympy / torch.utils._sympy names that serialized shape expressions use
_FUNCTIONS = {"Symbol", "Integer", "Rational", "Float", "Max", "Min", "Mod", "PythonMod", "FloorDiv", "CeilDiv",
              "CleanDiv", "IntTrueDiv", "FloatTrueDiv", "CeilToInt", "FloorToInt", "TruncToInt", "TruncToFloat",
              "RoundToInt", "RoundDecimal", "ToFloat", "Abs", "Pow", "PowByNatural", "FloatPow", "sqrt", "floor",
              "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "Piecewise", "ModularIndexing",
              "Identity", "Where", "OpaqueUnaryFn_sqrt", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or",
              "LShift", "RShift"}
_CONSTANTS = {"True", "False", "oo", "zoo", "nan", "pi", "E", "S"}
_GUARD_ATTRS = {"size", "stride", "storage_offset", "dim", "shape", "numel"}
_OPERATORS = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
              ast.Expression, ast.Load, ast.keyword, ast.Tuple)


def _only(text: str, allowed) -> bool:
    """Whether `text` parses as one Python expression made only of operators and nodes `allowed` accepts."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    return all(isinstance(node, _OPERATORS) or allowed(node) for node in ast.walk(tree))


def _expression_node(node: ast.AST) -> bool:
    """Shape symbols, numbers, allowlisted sympy names and calls (Symbol('s0', integer=True))."""
    if isinstance(node, ast.Constant):
        return not isinstance(node.value, str) or bool(_SYMBOL.fullmatch(node.value))
    if isinstance(node, ast.Name):
        return node.id in _FUNCTIONS or node.id in _CONSTANTS or bool(_SYMBOL.fullmatch(node.id))
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS


def _guard_node(node: ast.AST) -> bool:
    """Comparisons over L['name'].size()[i]-style reads and numbers."""
    if isinstance(node, (ast.Subscript, ast.Constant)):
        return not isinstance(node, ast.Constant) or isinstance(node.value, (int, float, str, bool))
    if isinstance(node, ast.Name):
        return node.id == "L"
    if isinstance(node, ast.Attribute):
        return node.attr in _GUARD_ATTRS
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _GUARD_ATTRS


def _safe_expression(text: str) -> bool:
    return _only(text, _expression_node)


def _safe_guard(text: str) -> bool:
    return _only(text, _guard_node)


def _strings_under(obj: Any, key: str) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _strings_under(v, key)
    elif isinstance(obj, list):
        for item in obj:
            yield from _strings_under(item, key)


def code_in_program(info: zipfile.ZipInfo, zf: zipfile.ZipFile) -> list[str]:
    """What in this .pt2 member would run as code on load (empty: nothing)."""
    name = info.filename
    if "/aotinductor/" in name or name.endswith((".so", ".dll", ".dylib")):
        return [f"<native code: {name}>"]
    if "/code/" in name and name.endswith(".py"):  # TorchScript source: torch ops only, but some touch files
        text = zf.read(info).decode("utf-8", "replace")
        return [f"<TorchScript calling {op} in {name}>" for op in sorted(set(_FILE_OPS.findall(text)))]
    if "/models/" not in name or not name.endswith(".json"):
        return []
    check_declared(name, info.file_size, compressed=info.compress_size)
    try:
        program = json.loads(zf.read(info))
    except (ValueError, UnicodeDecodeError):
        return []  # torch.export.load refuses it as corrupt
    found = [f"<shape expression evaluated as Python in {name}: {e[:60]!r}>"
             for e in _strings_under(program, "expr_str") if not _safe_expression(e)]
    guards = program.get("guards_code") if isinstance(program, dict) else None
    for guard in guards if isinstance(guards, list) else ([guards] if guards else []):
        if not isinstance(guard, str) or not _safe_guard(guard):
            found.append(f"<guard code executed on load in {name}: {str(guard)[:60]!r}>")
    return found
