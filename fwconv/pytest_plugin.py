"""pytest plugin (entry point `pytest11`): fixtures for writing parity gates as tests.

- `fwconv_assert_parity(reference, candidate, **options)`: fwconv.testing.assert_parity.
- `fwconv_convert(source, target, **options)`: converts into the test's tmp_path (validated) and
  returns the artifact path.

Both take fwconv's options by their one name (fwconv.options: `inputs`, `input_shape`, `atol`,
`via`, `quantize`...), the same as the CLI (`--input-shape`) and a gate config (`input_shape`).
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "fwconv: a model parity gate written with fwconv")


@pytest.fixture
def fwconv_assert_parity():
    from fwconv.testing import assert_parity

    return assert_parity


@pytest.fixture
def fwconv_convert(tmp_path):
    def convert(source, target: str, **options):
        from fwconv.convert.pipeline import convert as run
        from fwconv.models.formats import TARGET_SUFFIX
        from fwconv.options import PLUGIN, Options
        from fwconv.validators.settings import settings_from

        parsed = Options.from_mapping(options, door=PLUGIN, where="fwconv_convert")
        out = tmp_path / f"{target}_{len(list(tmp_path.iterdir()))}{TARGET_SUFFIX[target]}"
        return run(str(source), target, str(out), parsed, settings_from(parsed, precision=parsed.artifact_precision)).artifact

    return convert
