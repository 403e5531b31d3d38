"""Format sniffing and the static pickle check."""

from __future__ import annotations

import pytest

from fwconv.models.formats import detect_format, is_factory
from fwconv.models.pickle_scan import unsafe_globals
from fwconv.errors import InputError


def test_detects_each_format_by_content(models_dir, tmp_path):
    assert detect_format(str(models_dir / "cnn.pt")) == "torchscript"
    assert detect_format(str(models_dir / "cnn.pt2")) == "exported"
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((models_dir / "cnn.pt2").read_bytes())
    assert detect_format(str(renamed)) == "exported"  # content decides, not the suffix
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    assert detect_format(str(tmp_path / "sm")) == "savedmodel"
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 32)
    assert detect_format(str(tfl)) == "tflite"
    assert detect_format("fixtures/models.py:build_cnn") == "factory"
    assert is_factory("torchvision.models:resnet18")


@pytest.mark.parametrize("content, message", [(b"", "is empty"), (b"garbage" * 10, "not a valid")])
def test_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        detect_format(str(path))
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="no saved_model.pb, no config.json"):
        detect_format(str(tmp_path / "dir"))


def test_pickle_scan_allows_tensors_and_refuses_code(models_dir, tmp_path):
    import torch

    from fixtures.models import build_mlp

    assert unsafe_globals(str(models_dir / "cnn.pt")) == []
    assert unsafe_globals(str(models_dir / "cnn.pt2")) == []
    torch.save(build_mlp().state_dict(), tmp_path / "sd.pt")
    assert unsafe_globals(str(tmp_path / "sd.pt")) == []
    torch.save(build_mlp(), tmp_path / "full.pt")
    bad = unsafe_globals(str(tmp_path / "full.pt"))
    assert "fixtures.models.MLP" in bad

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    torch.save({"w": torch.zeros(1), "x": Evil()}, tmp_path / "evil.pt")
    assert any("system" in g for g in unsafe_globals(str(tmp_path / "evil.pt")))
