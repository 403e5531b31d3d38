"""Resumable gates: a job whose inputs and tool versions have not changed is not run again.

The key hashes everything a job's result depends on: the job's settings, the source's bytes
(the factory's .py file for a factory), every input/calibration/golden file, and the installed
versions of fwconv and the converters/runtimes. A cached result is reused only while the artifact
on disk still has the hash it had.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from fwconv.manifest import sha256_of, tool_versions

CACHE_FILE = ".fwconv-gate-cache.json"


def _file_hash(path: str) -> str | None:
    from fwconv.models.formats import model_file

    path = model_file(path)
    return sha256_of(path) if path and os.path.exists(path) else None


def job_tools(job: dict[str, Any]) -> list[str]:
    """The distributions this job's conversion and validation may run on (from the edges and
    runners themselves); every source family's when the source cannot be sniffed."""
    from fwconv.convert.planner import tools_for
    from fwconv.errors import FwconvError
    from fwconv.models.formats import detect_format

    try:
        fmt = detect_format(job["source"])
    except FwconvError:
        fmt = None
    return tools_for(fmt, job["target"])


def job_key(job: dict[str, Any], check_only: bool) -> str:
    files = {k: _file_hash(v) for k, v in job["settings"].items() if isinstance(v, str) and _file_hash(v)}
    golden = job.get("golden")
    parts = {
        "job": {k: v for k, v in job.items() if k != "timeout"}, "check_only": check_only,
        "source": _file_hash(job["source"]), "files": files, "tools": tool_versions(*job_tools(job)),
        "golden": {f: _file_hash(os.path.join(golden, f)) for f in sorted(os.listdir(golden))} if golden and os.path.isdir(golden) else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class GateCache:
    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, CACHE_FILE)
        try:
            with open(self.path) as f:
                self.entries = json.load(f)
        except (OSError, ValueError):
            self.entries = {}

    def lookup(self, job: dict, key: str) -> dict | None:
        entry = self.entries.get(f"{job['model']}:{job['target']}")
        if not entry or entry["key"] != key or not os.path.exists(job["output"]):
            return None
        if sha256_of(job["output"]) != entry["artifact_sha256"]:
            return None  # the artifact changed on disk since: run the job again
        return dict(entry["result"], cached=True)

    def store(self, job: dict, key: str, result: dict) -> None:
        if result["status"] == "error" or not os.path.exists(job["output"]):
            return  # errors are retried next time
        self.entries[result["id"]] = {"key": key, "artifact_sha256": sha256_of(job["output"]),
                                      "result": {k: v for k, v in result.items() if k != "cached"}}

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.entries, f, indent=1, default=str)
        os.replace(tmp, self.path)
