"""Every file fwconv writes goes through here: artifacts, manifests, reports, gate outputs.

The rules, in one place:
- real paths first: an output that is, contains or lies inside a source or input (model file or
  directory, inputs .npz, calibration data, gate config) is refused (exit 2), with or without
  --force;
- an existing output needs --force, and --force replaces only a file, a symbolic link (the link
  itself, never what it points to) or a directory that fwconv wrote (it holds fwconv's manifest);
  never an arbitrary directory such as the working directory;
- outputs are built in a temporary sibling (same filesystem) and renamed into place at the end,
  so a failed or interrupted run leaves no half-written artifact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterable, Iterator

from fwconv.errors import InputError, OutputExistsError



def _real(path: str) -> str:
    """Symbolic links resolved before `..` is applied (`link/../x` is where the link points, up
    one), as the kernel resolves it when the file is written."""
    return os.path.realpath(path)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def protected_paths(*paths: str | None) -> list[str]:
    """The existing files/dirs among `paths` (a factory `file.py:fn` counts as its file, a
    `package.module:fn` factory as its module's file)."""
    from fwconv.models.formats import FACTORY_RE, model_file

    found = []
    for path in filter(None, paths):
        found.append(model_file(path))
        factory = FACTORY_RE.match(path)
        if factory and not factory["target"].endswith(".py") and not os.path.exists(path):
            found.append(_module_file(factory["target"]))
    return [path for path in found if path and os.path.exists(path)]


def _module_file(module: str) -> str | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and os.path.exists(spec.origin) else None


def check_not_an_input(output: str, protected: Iterable[str]) -> None:
    """Refuse an output that is, contains or lies inside any protected path."""
    out = _real(output)
    for path in protected:
        real = _real(path)
        if out == real:
            raise InputError(f"output {output} is the input {path}: refusing to overwrite it")
        if _inside(out, real):
            raise InputError(f"output {output} lies inside the input {path}: refusing to write there")
        if _inside(real, out):
            raise InputError(f"output {output} contains the input {path}: refusing to replace it")


def written_by_fwconv(folder: str) -> bool:
    """A directory fwconv produced carries its manifest (generator 'fwconv')."""
    from fwconv.manifest import manifest_path

    try:
        with open(manifest_path(folder)) as f:
            return json.load(f).get("generator") == "fwconv"
    except (OSError, ValueError, AttributeError):
        return False


def check_replaceable(path: str, *, force: bool) -> None:
    if not os.path.lexists(path):
        return
    if not force:
        raise OutputExistsError(f"output already exists: {path}", hint="pass --force to replace it")
    if os.path.islink(path) or os.path.isfile(path):
        return
    if os.path.isdir(path):
        if _inside(_real(os.getcwd()), _real(path)):
            raise InputError(f"refusing to replace {path}: it holds the working directory", hint="run from elsewhere")
        if written_by_fwconv(path):
            return
        raise InputError(f"refusing to replace directory {path}: fwconv did not write it (no fwconv.json)",
                         hint="name a new output path")
    raise InputError(f"refusing to replace {path}: not a regular file or directory")


def check_writable(*paths: str, force: bool, protected: Iterable[str] = ()) -> None:
    protected = list(protected)
    reals = [_real(p) for p in paths]
    if len(set(reals)) != len(reals):
        raise InputError(f"two outputs name the same file: {', '.join(paths)}")
    for path in paths:
        check_not_an_input(path, protected)
        check_replaceable(path, force=force)


_LIVE: set[str] = set()  # staging and scratch directories in use: removed on a hard stop (fwconv.timeouts)


def remove_live_dirs() -> None:
    """Remove every staging and scratch directory still in use (the process is about to end
    without running its `finally` blocks)."""
    for path in list(_LIVE):
        shutil.rmtree(path, ignore_errors=True)


def _make_workdir(parent: str) -> str:
    try:
        os.makedirs(parent, exist_ok=True)
        path = tempfile.mkdtemp(prefix=".fwconv-", dir=parent)
        _LIVE.add(path)
        return path
    except OSError as exc:
        raise InputError(f"cannot write to {parent}: {exc.strerror or exc}") from exc


def _publish(temp: str, final: str, workdir: str) -> None:
    """Move `temp` to `final`; an old `final` is first moved aside, so a failure keeps it."""
    os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
    aside = None
    if os.path.lexists(final):
        aside = os.path.join(workdir, ".replaced-" + os.path.basename(final.rstrip(os.sep)))
        os.replace(final, aside)
    try:
        os.replace(temp, final)
    except OSError:
        if aside:
            os.replace(aside, final)
        raise


@contextlib.contextmanager
def staged_outputs(final_paths: list[str], *, force: bool, protected: Iterable[str] = ()) -> Iterator[dict[str, str]]:
    """Yield {final: temp} paths inside one temp dir next to the first output; commit on success.

    The temp dir is made first, so an unwritable destination fails before any model loads.
    It sits on the destination's filesystem, so the final moves are renames.
    """
    check_writable(*final_paths, force=force, protected=protected)
    workdir = _make_workdir(os.path.dirname(os.path.abspath(final_paths[0])))
    try:
        temps = {p: os.path.join(workdir, f"{i}-{os.path.basename(p.rstrip(os.sep))}")
                 for i, p in enumerate(final_paths)}
        yield temps
        from fwconv.signals import raise_if_interrupted

        raise_if_interrupted()  # a converter that swallowed the signal must not get its artifact published
        from fwconv.signals import note_published

        for final, temp in temps.items():
            if os.path.lexists(temp):
                _publish(temp, final, workdir)
                note_published(final)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _LIVE.discard(workdir)


def write_text(path: str, text: str, *, force: bool, protected: Iterable[str] = ()) -> None:
    """A report file, by the same rules as an artifact (staged, --force, never an input, a
    symbolic link replaced rather than written through)."""
    with staged_outputs([path], force=force, protected=protected) as temps:
        with open(temps[path], "w") as f:
            f.write(text)


@contextlib.contextmanager
def scratch_dir(prefix: str = "fwconv-") -> Iterator[str]:
    """A private working directory for converters that write side files (onnx2tf does)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        _LIVE.add(path)
        try:
            yield path
        finally:
            _LIVE.discard(path)
