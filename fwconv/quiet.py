"""Capture what converters print (Python and C++ alike) so fwconv's own output stays readable.

onnx2tf, the ONNX exporter and TensorFlow write progress and warnings to stdout/stderr at the
file-descriptor level. We keep the text and show it only when something fails (or --debug).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator

DEBUG = {"on": False}


class Captured:
    text: str = ""


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    cap = Captured()
    if DEBUG["on"]:
        yield cap
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no real file descriptors (embedded interpreters): capture Python-level only
            for fd, dup in saved:
                os.dup2(dup, fd)
                os.close(dup)
            saved = []
        py_buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(py_buf), contextlib.redirect_stderr(py_buf):
                yield cap
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, dup in saved:
                os.dup2(dup, fd)
                os.close(dup)
            sink.seek(0)
            cap.text = sink.read().decode(errors="replace") + py_buf.getvalue()


def tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
