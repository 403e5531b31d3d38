"""Atomic outputs: build in a temporary sibling, move into place only when all went well.

A failed or interrupted run never leaves a half-written artifact, and an existing output is
never replaced unless the caller says force.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from fwconv.errors import OutputExistsError


def check_writable(*paths: str, force: bool) -> None:
    for path in paths:
        if os.path.lexists(path) and not force:
            raise OutputExistsError(f"output already exists: {path}", hint="pass --force to replace it")


@contextlib.contextmanager
def staged_outputs(final_paths: list[str], *, force: bool) -> Iterator[dict[str, str]]:
    """Yield {final: temp} paths inside one temp dir next to the first output; commit on success.

    The temp dir sits on the same filesystem, so the final moves are renames.
    """
    check_writable(*final_paths, force=force)
    parent = os.path.dirname(os.path.abspath(final_paths[0]))
    os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=".fwconv-", dir=parent)
    try:
        temps = {p: os.path.join(workdir, f"{i}-{os.path.basename(p.rstrip(os.sep))}")
                 for i, p in enumerate(final_paths)}
        yield temps
        for final, temp in temps.items():
            if not os.path.lexists(temp):
                continue
            os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
            if os.path.lexists(final):
                if os.path.isdir(final) and not os.path.islink(final):
                    shutil.rmtree(final)
                else:
                    os.remove(final)
            os.replace(temp, final)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def scratch_dir(prefix: str = "fwconv-") -> tempfile.TemporaryDirectory:
    """A private working directory for converters that write side files (onnx2tf does)."""
    return tempfile.TemporaryDirectory(prefix=prefix)
