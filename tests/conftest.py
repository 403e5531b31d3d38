"""Shared test setup: no network, fixtures generated once per session, conversions cached.

Conversions are the slow part (seconds each), so tests that need the same artifact share it
through `convert_cached`. Every parity assertion still runs the artifact through its own
runtime inside the test.
"""

from __future__ import annotations

import os
import socket
import sys

import numpy as np
import pytest

pytest_plugins = ["pytester"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for `fixtures.*` factories
# Tests assert exact stderr (one line per failure); CI=true would add progress lines to it.
# tests/test_progress.py turns progress back on where it checks it.
os.environ["FWCONV_PROGRESS"] = "0"


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Fail any attempt to reach a non-loopback address: conversion and validation are offline."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            return real_connect(self, address)
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise OSError(f"network access attempted during tests: {address}")

    socket.socket.connect = guarded
    yield
    socket.socket.connect = real_connect


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    from fixtures.generate import generate

    out = tmp_path_factory.mktemp("fixture_models")
    generate(str(out))
    return out


@pytest.fixture(scope="session")
def sample(models_dir):
    def load(name: str) -> dict[str, np.ndarray]:
        with np.load(models_dir / f"{name}.npz") as data:
            return {k: data[k] for k in data.files}
    return load


_CACHE: dict = {}


@pytest.fixture(scope="session")
def convert_cached(tmp_path_factory):
    """convert_cached(source, target, **options) -> ConversionResult, converted once per session."""
    from fwconv.convert.options import ConvertOptions
    from fwconv.convert.pipeline import convert
    from fwconv.validators.compare import ValidateSettings
    from fwconv.validators.metrics import Tolerance

    out_dir = tmp_path_factory.mktemp("converted")

    def run(source: str, target: str, **kw):
        key = (str(source), target, tuple(sorted((k, str(v)) for k, v in kw.items())))
        if key not in _CACHE:
            suffix = {"onnx": ".onnx", "tflite": ".tflite", "savedmodel": "_sm", "pte": ".pte"}[target]
            out = out_dir / f"m{len(_CACHE)}{suffix}"
            options = ConvertOptions(**kw)
            settings = ValidateSettings(tolerance=Tolerance(options.artifact_precision), latency=None)
            _CACHE[key] = convert(str(source), target, str(out), options, settings)
        return _CACHE[key]
    return run


def invoke(*args):
    """Run the CLI in-process (Click's CliRunner) with every argument as a string."""
    from click.testing import CliRunner

    from fwconv.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


# A factory whose op (a determinant) only a Select-TF (Flex) op can express in TFLite: exit 5.
FLEX_FACTORY = """
import torch
class Det(torch.nn.Module):
    def forward(self, x):
        return torch.linalg.det(x)
def build():
    return Det()
"""


def scaled_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """max |cand - ref| / max |ref|: the test's own parity measure, independent of fwconv's metrics."""
    ref = np.asarray(reference, dtype=np.float64)
    scale = max(float(np.abs(ref).max()), 1e-12)
    return float(np.abs(np.asarray(candidate, dtype=np.float64) - ref).max() / scale)


def run_torch(source: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a PyTorch source directly (not through fwconv's runner) and flatten its outputs."""
    import torch

    if source.endswith(".pt2"):
        model = torch.export.load(source).module()
    elif source.endswith(".pt"):
        model = torch.jit.load(source)
    else:
        import importlib.util

        path, _, attr = source.partition(":")
        spec = importlib.util.spec_from_file_location("factory_under_test", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = getattr(mod, attr)()
    with torch.no_grad():
        out = model(*[torch.from_numpy(v) for v in feed.values()])
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = [out[k] for k in out.keys() if out[k] is not None]
    if not isinstance(out, (list, tuple)):
        out = [out]
    return [o.numpy() for o in out]


def run_litert(path: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a .tflite in the plain ai_edge_litert interpreter (no Flex delegate), by signature."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    runner = interp.get_signature_runner("serving_default")
    return {k: np.array(v) for k, v in runner(**feed).items()}


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """The CLI routes SIGINT/SIGTERM to its own handler; in-process CLI tests must not leave it
    installed in pytest's process."""
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
