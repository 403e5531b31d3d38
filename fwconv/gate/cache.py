"""Resumable gates: a job whose inputs and tool versions have not changed is not run again.

The key hashes everything a job's result depends on: the job's settings, the source's bytes
(the factory's .py file for a factory), every input/calibration/golden file, and the installed
versions of fwconv and the converters/runtimes. A cached result is reused only while the artifact
on disk still has the hash it had.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from fwconv.gate.result import JobResult, Status
from fwconv.manifest import sha256_of, tool_versions

CACHE_FILE = ".fwconv-gate-cache.json"


def _file_hash(path: str) -> str | None:
    from fwconv.models.formats import model_file

    path = model_file(path)
    return sha256_of(path) if path and os.path.exists(path) else None


def tools_for(fmt: str | None, target: str) -> list[str]:
    """Every distribution a conversion to `target` may run on: the tools of each edge on any route
    from the source's family (every source family when `fmt` is None), and the runners of the
    source and of the target. Declared by the edges and runners themselves, so a new one cannot
    be forgotten (the gate's cache key is made of these versions)."""
    from fwconv.convert.planner import FAMILY, all_routes, family_of
    from fwconv.models.formats import target_format
    from fwconv.validators.runners import runner_classes

    families = [family_of(fmt)] if fmt else sorted(set(FAMILY.values()))
    tools = {t for family in families if family != target for route in all_routes(family, target)
             for edge in route for t in edge.tools}
    formats = ({fmt} if fmt else set(FAMILY)) | {target_format(target)}
    tools |= {t for cls in runner_classes() if set(cls.formats) & formats for t in cls.tools}
    return sorted(tools | {"numpy"})


def job_tools(job: dict[str, Any]) -> list[str]:
    """The distributions this job's conversion and validation may run on (from the edges and
    runners themselves); every source family's when the source cannot be sniffed."""
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

    def lookup(self, job: dict, key: str) -> JobResult | None:
        entry = self.entries.get(f"{job['model']}:{job['target']}")
        if not entry or entry["key"] != key or not os.path.exists(job["output"]):
            return None
        if sha256_of(job["output"]) != entry["artifact_sha256"]:
            return None  # the artifact changed on disk since: run the job again
        return dataclasses.replace(JobResult.from_dict(entry["result"]), cached=True)

    def store(self, job: dict, key: str, result: JobResult) -> None:
        if result.status in (Status.ERROR, Status.STAGE_TIMEOUT) or not os.path.exists(job["output"]):
            return  # errors are retried next time
        self.entries[result.id] = {"key": key, "artifact_sha256": sha256_of(job["output"]),
                                   "result": dataclasses.replace(result, cached=False).to_dict()}

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.entries, f, indent=1, default=str)
        os.replace(tmp, self.path)
