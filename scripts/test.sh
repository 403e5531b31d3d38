#!/usr/bin/env bash
# Set everything up, then run the whole test suite with no network (where `unshare -n` works,
# the tests run in a network namespace with nothing but loopback; otherwise the suite's own
# socket guard still fails any outside connection). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The HTML report test opens the reports in headless Chromium from the system packages. Best
# effort: installed when missing (as root, with apt-get), and the run never fails over it; the
# browser test skips where Chromium is absent.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "installing chromium for the HTML report test"
  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 \
    && apt-get install -y -q chromium >/dev/null 2>&1)) || true
fi
command -v chromium >/dev/null 2>&1 || echo "chromium not installed: the browser test will skip"
# tests/test_packaging.py installs 'fwconv[onnx]' alone into a fresh venv, offline: its wheels are
# fetched here, while the package registry is reachable.
.venv/bin/python -m pip download -q -c constraints.txt --no-build-isolation -d .cache/wheelhouse ".[onnx]" \
  || echo "could not fetch the fwconv[onnx] wheels: the extras test will fail in CI, skip elsewhere"
PYTEST=(.venv/bin/python -m pytest "$@")
if unshare -n true 2>/dev/null; then
  echo "running tests without network (unshare -n)"
  set +e
  unshare -n sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "${PYTEST[@]}"
  rc=$?
else
  set +e
  "${PYTEST[@]}"
  rc=$?
fi
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
fi
exit "$rc"
