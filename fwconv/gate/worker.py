"""One gate job (model x target) end to end, in its own process: convert + validate against the
source, then against the golden. Always returns a result; never raises.

    python -m fwconv.gate.worker JOB.json RESULT.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from typing import Any

from fwconv.gate.result import JobResult, Status


def run_job(job: dict[str, Any], *, check_only: bool = False) -> JobResult:
    from fwconv.errors import FwconvError, StageTimeout, UnsupportedOpError

    start = time.perf_counter()
    result = JobResult.for_job(job)
    try:
        _convert_and_check(job, result, check_only)
    except UnsupportedOpError as exc:
        result.status, result.messages = Status.UNSUPPORTED_OP, [exc.one_line()]
    except StageTimeout as exc:
        result.status, result.messages = Status.STAGE_TIMEOUT, [exc.one_line()]
    except FwconvError as exc:
        result.status, result.messages = Status.ERROR, [exc.one_line()]
    except Exception as exc:  # a bug or a library failure: reported for this job, the gate goes on
        result.status, result.messages = Status.ERROR, [f"{type(exc).__name__}: {exc}".splitlines()[0]]
        result.traceback = traceback.format_exc()[-4000:]
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def _convert_and_check(job: dict[str, Any], result: JobResult, check_only: bool) -> None:
    """Convert (or, with --check-only, take the artifact on disk), validate, compare with the golden."""
    from fwconv.errors import FwconvError, ParityError
    from fwconv.gate.config import convert_options, gate_settings

    options = convert_options(job["settings"])
    settings = gate_settings(job["settings"], options.artifact_precision)
    if check_only and not os.path.exists(job["output"]):
        raise FwconvError(f"no artifact at {job['output']} (run the gate without --check-only first)")
    from fwconv.models.hf import is_hf_dir

    if check_only and (job["target"] == "litertlm" or is_hf_dir(job["source"])):
        from fwconv.validators.generative import GenerativeSettings, validate_generative

        report = validate_generative(job["source"], job["output"], GenerativeSettings.from_options(options))
    elif check_only:
        from fwconv.validators import validate

        user = None
        if options.inputs:
            from fwconv.specs import load_npz

            user = load_npz(options.inputs)
        report = validate(job["source"], job["output"], settings=settings, user_inputs=user,
                          ref_specs=options.input_specs or None)
    else:
        from fwconv.convert.pipeline import convert

        try:
            report = convert(job["source"], job["target"], job["output"], options, settings).validation
        except ParityError as exc:  # kept on disk (keep_failed) so it can be inspected
            report = exc.report
            if exc.debug is not None:
                result.debug = _write_debug(exc.debug, job["output"])
    result.validation = report.to_dict()
    result.status = Status(report.status)
    result.messages += report.failures()
    if "candidate" in report.latency:
        result.latency = {k: report.latency["candidate"].to_dict()[k] for k in ("p50_ms", "p90_ms", "p99_ms", "runs")}
    if job.get("golden"):
        _check_golden(job, result, settings)


def _check_golden(job: dict[str, Any], result: JobResult, settings) -> None:
    from fwconv.gate.golden import compare_to_golden

    result.golden = {}
    for label, model in (("source", job["source"]), ("artifact", job["output"])):
        g = compare_to_golden(job["golden"], model, dataclasses.replace(settings, latency=None))
        result.golden[label] = {"status": g.status, "failures": g.failures()}
        for failure in g.failures() if not g.parity_passed else []:
            result.fail(Status.GOLDEN_FAILED, f"golden ({label}): {failure}")


def _write_debug(debug, artifact: str) -> dict[str, Any]:
    """debug_on_failure: the layerwise report beside the failed artifact (in the gate's output_dir)."""
    import importlib.util

    from fwconv.validators.debug.report import write_debug_reports

    html = artifact + ".debug.html" if importlib.util.find_spec("plotly") else None
    written = write_debug_reports(debug, json_path=artifact + ".debug.json", html_path=html, force=True)
    first = debug.to_dict()["first_divergence"]
    where = None if first is None else {"reference": first["reference"], "candidate": first["candidate"]}
    return {"reports": written, "first_divergence": where}


def main(argv: list[str]) -> int:
    from fwconv import signals

    signals.install()  # SIGTERM from the gate: staging and scratch dirs are removed on the way out
    job_path, result_path = argv[1], argv[2]
    with open(job_path) as f:
        payload = json.load(f)
    result = run_job(payload["job"], check_only=payload.get("check_only", False))
    with open(result_path, "w") as f:
        json.dump(result.to_dict(), f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
