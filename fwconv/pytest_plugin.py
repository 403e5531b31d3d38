"""pytest plugin (entry point `pytest11`): fixtures for writing parity gates as tests.

- `fwconv_assert_parity`: the `fwconv.testing.assert_parity` helper.
- `fwconv_convert(source, target, **options)`: converts into the test's tmp_path (validated) and
  returns the artifact path.
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
        from fwconv.models.formats import TARGET_SUFFIX
        from fwconv.convert.options import ConvertOptions
        from fwconv.convert.pipeline import convert as run

        out = tmp_path / f"{target}_{len(list(tmp_path.iterdir()))}{TARGET_SUFFIX[target]}"
        return run(str(source), target, str(out), ConvertOptions(**options)).artifact

    return convert
