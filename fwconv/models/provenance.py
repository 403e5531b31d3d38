"""Where a tensor came from in the user's PyTorch code, as the exporters record it: the module
path (FX `nn_module_stack`, the ONNX exporter's `pkg.torch.onnx.name_scopes`) and the user's
source line (the last stack frame outside torch itself)."""

from __future__ import annotations

import ast
import os
import re

_FRAME_RE = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_LIBRARY_PARTS = (f"{os.sep}torch{os.sep}", f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def user_frame(stack_trace: str | None) -> str | None:
    """'models.py:25 in forward' for the innermost frame of the user's own code."""
    frames = _FRAME_RE.findall(stack_trace or "")
    own = [f for f in frames if not any(part in f[0] for part in _LIBRARY_PARTS)] or frames
    if not own:
        return None
    path, line, func = own[-1]
    return f"{os.path.basename(path)}:{line} in {func}"


def module_from_stack(nn_module_stack: dict | None) -> str | None:
    """'features.0 (Conv2d)' from an FX node's nn_module_stack (innermost module last)."""
    if not nn_module_stack:
        return None
    path, cls = list(nn_module_stack.values())[-1]
    cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return f"{path or '(top)'} ({cls_name.rsplit('.', 1)[-1]})"


def module_from_onnx_metadata(props: dict[str, str]) -> str | None:
    """The same, from the ONNX exporter's node metadata (name scopes and class hierarchy)."""
    try:
        scopes = ast.literal_eval(props.get("pkg.torch.onnx.name_scopes", "[]"))
        classes = ast.literal_eval(props.get("pkg.torch.onnx.class_hierarchy", "[]"))
    except (ValueError, SyntaxError):
        return None
    if len(scopes) < 2:
        return None
    path = scopes[-2] or "(top)"
    cls = classes[-2].rsplit(".", 1)[-1] if len(classes) >= 2 else "?"
    return f"{path} ({cls})"
