"""Keras 3 `.keras` files, loaded with safe_mode: a Lambda layer's Python code is refused unless
the user trusts the file."""

from __future__ import annotations

from fwconv.errors import InputError, first_line, require
from fwconv.quiet import captured_output


def load_keras(path: str, *, trust: bool):
    keras = require("keras", "tf")
    try:
        with captured_output():
            return keras.saving.load_model(path, safe_mode=not trust, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise InputError(f"{path} contains Python code (a Lambda layer); loading it would run that code",
                             hint="pass --trust-pickle if you trust its author") from exc
        raise InputError(f"cannot load {path}: {first_line(exc)}") from exc
    except Exception as exc:  # a malformed archive or config fails in Keras in many ways: all are bad input
        raise InputError(f"cannot load {path} as a Keras model: {type(exc).__name__}: {first_line(exc)}") from exc
