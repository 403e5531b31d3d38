"""CLI behaviour: fast start-up, one-line errors with documented exit codes, no partial outputs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import invoke

FWCONV = [sys.executable, "-m", "fwconv.cli"]


def test_help_does_not_import_frameworks():
    code = ("import sys; from click.testing import CliRunner; from fwconv.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(main, ['torch2tflite', '--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(main, ['torch2tflite', 'x.pt', '--no-such-flag']); assert r.exit_code == 2; "
            "heavy = [m for m in ('torch', 'tensorflow', 'onnx', 'onnxruntime', 'onnx2tf') if m in sys.modules]; "
            "print(heavy); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_help_lists_exit_codes_and_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for word in ("torch2tflite", "torch2onnx", "torch2savedmodel", "onnx2tflite", "onnx2savedmodel", "convert",
                 "validate", "3 parity failed"):
        assert word in result.output


@pytest.mark.parametrize("args, code, message", [
    (["torch2tflite", "missing.pt"], 2, "model not found: missing.pt"),
    (["convert", "missing.pt", "--to", "caffe"], 2, "unknown --to 'caffe'"),
    (["torch2tflite", "x.pt", "--bogus"], 2, "No such option"),
    (["torch2tflite", "x.pt", "--input-shape", "1,a,3"], 2, "bad shape"),
])
def test_usage_errors(args, code, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_wrong_format_and_corrupt_files(tmp_path, models_dir):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    r = invoke("onnx2tflite", text)
    assert r.exit_code == 2 and "is not a valid ONNX model" in r.output

    truncated = tmp_path / "cut.pt"
    truncated.write_bytes((models_dir / "cnn.pt").read_bytes()[:2000])
    r = invoke("torch2tflite", truncated, "--input-shape", "1,3,32,32")
    assert r.exit_code == 2 and "truncated or corrupt" in r.output

    onnx_cut = tmp_path / "cut.onnx"
    onnx_cut.write_bytes(b"\x08\x08" + os.urandom(200))
    r = invoke("onnx2tflite", onnx_cut)
    assert r.exit_code == 2 and "not a valid ONNX model" in r.output

    r = invoke("torch2tflite", models_dir / "cnn.npz")
    assert r.exit_code == 2
    assert not any(p.name.startswith(".fwconv-") for p in tmp_path.iterdir())


def test_onnx_given_to_torch_command(tmp_path, models_dir, convert_cached):
    onnx_model = convert_cached(str(models_dir / "mlp.pt2"), "onnx").artifact
    r = invoke("torch2tflite", onnx_model)
    assert r.exit_code == 2 and "this command takes torch models" in r.output


@pytest.mark.slow
def test_shape_that_does_not_fit(models_dir, tmp_path):
    out = tmp_path / "m.tflite"
    r = invoke("torch2tflite", models_dir / "cnn.pt", "--input-shape", "1,5,32,32", "-o", out)
    assert r.exit_code == 2
    assert "do not fit the model" in r.output and "channels" in r.output
    assert not out.exists()


@pytest.mark.slow
def test_missing_shapes_for_torchscript(models_dir):
    r = invoke("torch2tflite", models_dir / "cnn.pt")
    assert r.exit_code == 2 and "--input-shape" in r.output


@pytest.mark.slow
def test_existing_output_is_kept_without_force(models_dir, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    r = invoke("torch2onnx", models_dir / "mlp.pt2", "-o", out)
    assert r.exit_code == 2 and "already exists" in r.output
    assert out.read_bytes() == b"precious"
    r = invoke("torch2onnx", models_dir / "mlp.pt2", "-o", out, "--force", "--no-latency")
    assert r.exit_code == 0, r.output
    assert out.read_bytes() != b"precious" and (tmp_path / "m.onnx.fwconv.json").exists()


@pytest.mark.slow
def test_pickled_module_is_refused_unless_trusted(tmp_path):
    import torch

    from fixtures.models import build_mlp

    path = tmp_path / "full_model.pt"
    torch.save(build_mlp(), path)
    r = invoke("torch2onnx", path, "--input-shape", "2,32", "-o", tmp_path / "a.onnx")
    assert r.exit_code == 2
    assert "loading it would run code from the file" in r.output and "--trust-pickle" in r.output
    assert not (tmp_path / "a.onnx").exists()
    r = invoke("torch2onnx", path, "--input-shape", "2,32", "-o", tmp_path / "b.onnx", "--trust-pickle", "--no-latency")
    assert r.exit_code == 0, r.output

    # a plain state_dict is data, and says what is missing
    torch.save(build_mlp().state_dict(), tmp_path / "weights.pt")
    r = invoke("torch2onnx", tmp_path / "weights.pt", "--input-shape", "2,32")
    assert r.exit_code == 2 and "state_dict" in r.output


@pytest.mark.slow
def test_failed_conversion_leaves_nothing(tmp_path):
    """An op the converter cannot express fails cleanly: exit 5 names it, no artifact, no temp dir."""
    factory = tmp_path / "det_model.py"
    factory.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.linalg.det(x)\n"
        "def build():\n"
        "    return M()\n")
    out = tmp_path / "det.tflite"
    r = invoke("torch2tflite", f"{factory}:build", "--input-shape", "2,3,3", "-o", out)
    assert r.exit_code == 5, r.output
    assert "FlexMatrixDeterminant" in r.output and "--allow-flex" in r.output
    assert "Traceback" not in r.output and r.output.count("fwconv: error:") == 1
    assert not out.exists() and not (tmp_path / "det.tflite.fwconv.json").exists()
    assert not any(p.name.startswith(".fwconv-") for p in tmp_path.iterdir())

    r = invoke("torch2tflite", f"{factory}:build", "--input-shape", "2,3,3", "-o", out, "--allow-flex")
    assert r.exit_code == 0, r.output
    assert "NOT VALIDATED" in r.output and out.exists()
    # validate runs each model in its own process: the unsupported-op error keeps its type (exit 5)
    r = invoke("validate", f"{factory}:build", out, "--input-shape", "2,3,3", "--no-latency")
    assert r.exit_code == 5 and "FlexMatrixDeterminant" in r.output, r.output


@pytest.mark.slow
def test_main_job_on_bundled_example(tmp_path):
    """The README's first command, as a subprocess: convert the bundled example to TFLite."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "example.tflite"
    proc = subprocess.run(FWCONV + ["torch2tflite", os.path.join(repo, "fixtures", "example_cnn.pt"),
                                    "--input-shape", "1,3,32,32", "-o", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "verdict: PASS" in proc.stdout and out.exists()
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_onnx_source_commands_and_convert_planner(models_dir, convert_cached, tmp_path, sample):
    import onnx
    import tensorflow as tf

    onnx_model = convert_cached(str(models_dir / "two_io.pt2"), "onnx").artifact
    before = open(onnx_model, "rb").read()
    out = tmp_path / "two_sm"
    r = invoke("onnx2savedmodel", onnx_model, "-o", out, "--no-latency")
    assert r.exit_code == 0, r.output
    assert open(onnx_model, "rb").read() == before  # onnx2tf never sees the user's file
    feed = sample("two_io")
    outs = tf.saved_model.load(str(out)).signatures["serving_default"](**{k: tf.constant(v) for k, v in feed.items()})
    assert sorted(outs) == ["output_0", "output_1"] and list(outs["output_0"].shape) == [1, 8, 16, 16]

    r = invoke("convert", models_dir / "mlp.pt2", "--to", "onnx", "-o", tmp_path / "mlp17.onnx", "--opset", "17",
               "--no-latency")
    assert r.exit_code == 0, r.output
    assert "via torch -> onnx" in r.output
    assert {o.domain: o.version for o in onnx.load(tmp_path / "mlp17.onnx").opset_import}[""] == 17


@pytest.mark.slow
def test_per_output_tolerance_override(models_dir, convert_cached):
    onnx_model = convert_cached(str(models_dir / "two_io.pt2"), "onnx").artifact
    r = invoke("validate", models_dir / "two_io.pt2", onnx_model, "--in-process", "--no-latency",
               "--tolerance", "output_1=1e-12")  # too tight for one output: only that one fails
    assert r.exit_code == 3
    assert "output 'output_1'" in r.output and "output 'output_0'" not in r.output
    r = invoke("validate", models_dir / "two_io.pt2", onnx_model, "--tolerance", "output_1=-1")
    assert r.exit_code == 2 and "must not be negative" in r.output
