#!/usr/bin/env bash
# Set up .venv with fwconv and every framework it drives, at the known-good versions.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torchvision must not come in: its registry build is CUDA-only and breaks the CPU torch
# (and, through it, transformers and onnx2torch imports). onnx2torch declares it, so it is
# installed without dependencies; everything it really needs is already here.
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all,test]"
.venv/bin/python -m pip install -q -c constraints.txt --no-deps onnx2torch
if .venv/bin/python -m pip show -q torchvision >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall -q -y torchvision
fi
.venv/bin/python - <<'PY'
import importlib
for name in ("torch", "onnx", "onnxruntime", "onnxscript", "onnx2tf", "tensorflow", "ai_edge_litert", "executorch",
             "litert_torch", "litert_lm", "fwconv.cli"):
    importlib.import_module(name)
print("fwconv environment ready")
PY
