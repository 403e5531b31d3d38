"""Installed the way users install it: the sdist and wheel are built from a copy of the checkout
(the wheel from the sdist, as `python -m build` does), the wheel goes into a fresh virtual
environment, and the commands run from there, outside the source tree.

- `fresh`: the wheel alone, its dependencies taken from the suite's environment (a .pth line
  appends that site-packages: its editable fwconv is never imported, the wheel's comes first).
- `onnx_only`: `pip install 'fwconv[onnx]'` from a local wheelhouse (filled by scripts/test.sh
  while the registry is reachable; the tests themselves run without network): ONNX files
  validate, inspect and debug; everything else says which extra to install, in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEELHOUSE = os.path.join(REPO, ".cache", "wheelhouse")


def _mapped_packages() -> set[str]:
    """Every folder with an __init__.py under the package-dir mapping, as an import name."""
    cfg = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["tool"]["setuptools"]
    found = set()
    for name, folder in cfg["package-dir"].items():
        for here, dirs, files in os.walk(os.path.join(REPO, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if "__init__.py" in files:
                rel = os.path.relpath(here, os.path.join(REPO, folder))
                found.add(name if rel == "." else f"{name}.{rel.replace(os.sep, '.')}")
    return found


def test_every_package_folder_is_shipped():
    """A folder with an __init__.py that pyproject.toml does not list is missing from the wheel
    (the debugger was, once: `fwconv debug` failed in every installed copy)."""
    cfg = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["tool"]["setuptools"]
    assert _mapped_packages() == set(cfg["packages"])


def _copy_checkout(dst: str) -> str:
    skip = shutil.ignore_patterns(".git", ".venv", ".cache", "__pycache__", "*.egg-info", "build", "dist", "out",
                                  ".pytest_cache", ".whl", ".gl")
    shutil.copytree(REPO, dst, ignore=skip)
    return dst


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist, wheel) built with `python -m build` (offline: --no-isolation uses this setuptools)."""
    root = tmp_path_factory.mktemp("build")
    src = _copy_checkout(str(root / "src"))
    out = root / "dist"
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), src],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return str(sdist), str(wheel)


def _venv(path: str, *, suite_deps: bool) -> str:
    subprocess.run([sys.executable, "-m", "venv", path], check=True, timeout=300)
    if suite_deps:
        site = subprocess.run([os.path.join(path, "bin", "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(site, "zz_suite_dependencies.pth"), "w") as f:
            f.write(sysconfig.get_paths()["purelib"] + "\n")  # appended after the venv's own site-packages
    return os.path.join(path, "bin")


def _pip(bin_dir: str, *args: str) -> None:
    done = subprocess.run([os.path.join(bin_dir, "python"), "-m", "pip", "install", "-q", "--no-index",
                           "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _run(bin_dir: str, cwd, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([os.path.join(bin_dir, args[0]), *args[1:]], cwd=str(cwd), capture_output=True, text=True,
                          timeout=timeout, env={**env, "FWCONV_PROGRESS": "0"})


@pytest.fixture(scope="module")
def fresh(dists, tmp_path_factory):
    bin_dir = _venv(str(tmp_path_factory.mktemp("venv") / "fresh"), suite_deps=True)
    _pip(bin_dir, "--no-deps", dists[1])
    return bin_dir


def _onnx_pair(folder) -> tuple[str, str]:
    """conv -> relu -> conv, and the same with one weight of the second conv changed."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, w2 = (rng.standard_normal((4, 4, 3, 3)).astype(np.float32) for _ in range(2))

    def save(name: str, w2_value) -> str:
        graph = helper.make_graph(
            [helper.make_node("Conv", ["x", "w1"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])],
            "pair", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
            [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2_value, "w2")])
        path = os.path.join(str(folder), name)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
        return path

    bad = w2.copy()
    bad[1, 2, 1, 1] += 3.0
    return save("ref.onnx", w2), save("bad.onnx", bad)


def test_sdist_and_wheel_carry_every_module(dists):
    sdist, wheel = dists
    import tarfile

    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for package in _mapped_packages():
        init = package.replace(".", "/") + "/__init__.py"
        assert init in in_wheel, f"{init} missing from the wheel"
    for folder in ("fwconv", "convert", "validators"):
        for here, dirs, files in os.walk(os.path.join(REPO, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(here, f), REPO)
                    assert rel in in_sdist, f"{rel} missing from the sdist"
    assert {"pyproject.toml", "README.md"} <= in_sdist


@pytest.mark.slow
def test_installed_wheel_debugs_repairs_inspects_and_runs_the_plugin(fresh, tmp_path):
    """What once failed in every installed copy: `fwconv debug`, a conversion that needs a
    repair (ONNX's ConstantPad2d node test at opset 10), and the pytest plugin."""
    where = _run(fresh, tmp_path, "python", "-c", "import fwconv.validators.debug as d, fwconv; print(fwconv.__file__)")
    assert where.returncode == 0 and os.path.dirname(fresh) in where.stdout, where.stdout + where.stderr
    ref, bad = _onnx_pair(tmp_path)
    debug = _run(fresh, tmp_path, "fwconv", "debug", ref, bad, "--no-latency")
    assert debug.returncode == 3, debug.stdout + debug.stderr
    assert "conv2" in debug.stdout and "ModuleNotFoundError" not in debug.stderr

    from test_repair import _node_test  # noqa: F401  (the node test's folder, located the same way)
    import onnx
    from onnx import version_converter

    pad = tmp_path / "pad10.onnx"
    onnx.save(version_converter.convert_version(onnx.load(os.path.join(_node_test("test_ConstantPad2d"), "model.onnx")), 10),
              str(pad))
    repaired = _run(fresh, tmp_path, "fwconv", "onnx2tflite", str(pad), "-o", "pad.tflite", "--no-latency")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired by onnx-opset-upgrade" in repaired.stdout
    inspect = _run(fresh, tmp_path, "fwconv", "inspect", "pad.tflite")
    assert inspect.returncode == 0 and "serving_default" in inspect.stdout, inspect.stdout + inspect.stderr

    (tmp_path / "test_gate.py").write_text(
        "import fwconv, os\n"
        f"def test_parity(fwconv_assert_parity):\n"
        f"    assert fwconv.__file__.startswith({os.path.dirname(os.path.dirname(fresh))!r})\n"
        f"    fwconv_assert_parity({ref!r}, {ref!r})\n")
    plugin = _run(fresh, tmp_path, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_gate.py")
    assert plugin.returncode == 0 and "1 passed" in plugin.stdout, plugin.stdout + plugin.stderr


@pytest.fixture(scope="module")
def onnx_only(dists, tmp_path_factory):
    if not os.path.isdir(WHEELHOUSE):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{WHEELHOUSE} is missing: scripts/test.sh fills it before the tests")
        pytest.skip(f"no wheelhouse at {WHEELHOUSE} (scripts/test.sh fills it)")
    bin_dir = _venv(str(tmp_path_factory.mktemp("venv") / "onnx_only"), suite_deps=False)
    _pip(bin_dir, "--find-links", WHEELHOUSE, f"{dists[1]}[onnx]")
    return bin_dir


@pytest.mark.slow
def test_onnx_extra_alone_validates_inspects_debugs_and_names_the_missing_extras(onnx_only, models_dir, tmp_path):
    listed = subprocess.run([os.path.join(onnx_only, "python"), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True).stdout.lower()
    assert "onnxruntime==" in listed and "torch==" not in listed and "tensorflow" not in listed, listed
    ref, bad = _onnx_pair(tmp_path)
    ok = _run(onnx_only, tmp_path, "fwconv", "validate", ref, ref)
    assert ok.returncode == 0 and "verdict: PASS" in ok.stdout, ok.stdout + ok.stderr
    assert _run(onnx_only, tmp_path, "fwconv", "validate", ref, bad, "--no-latency").returncode == 3
    inspect = _run(onnx_only, tmp_path, "fwconv", "inspect", ref)
    assert inspect.returncode == 0 and "conv" in inspect.stdout.lower(), inspect.stdout + inspect.stderr
    debug = _run(onnx_only, tmp_path, "fwconv", "debug", ref, bad, "--no-latency")
    assert debug.returncode == 3 and "conv2" in debug.stdout, debug.stdout + debug.stderr
    for args, extra in ((["onnx2tflite", ref], "tflite"), (["torch2onnx", str(models_dir / "mlp.pt2")], "torch"),
                        (["onnx2torch", ref], "torch")):
        r = _run(onnx_only, tmp_path, "fwconv", *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1, r.stdout + r.stderr
        assert f"pip install 'fwconv[{extra}]'" in lines[0], lines
    assert not list(tmp_path.glob("*.tflite")) and not list(tmp_path.glob("*.pt"))
