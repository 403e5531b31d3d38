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

STATUS_CODE = {"pass": 0, "error": 1, "parity_failed": 3, "golden_failed": 3, "latency_exceeded": 4,
               "latency_regressed": 4, "unsupported_op": 5}


def convert_options(settings: dict[str, Any]):
    from fwconv.convert.job import ConvertOptions
    from fwconv.specs import specs_from_options

    return ConvertOptions(
        opset=settings.get("opset", 18), quantize=settings.get("quantize"), int8_io=settings.get("int8_io", False),
        calibration=settings.get("calibration"), via=settings.get("via", "auto"), layout=settings.get("layout", "source"),
        exporter=settings.get("exporter", "auto"), allow_flex=settings.get("allow_flex", False), force=True,
        keep_failed=True, inputs_file=settings.get("inputs"),
        input_specs=specs_from_options(tuple(settings.get("input_shape", ())), tuple(settings.get("input_dtype", ()))),
    )


def validate_settings(settings: dict[str, Any], precision: str):
    from fwconv.validators.compare import ValidateSettings
    from fwconv.validators.latency import LatencySettings
    from fwconv.validators.metrics import Tolerance

    precision = settings.get("precision", precision)
    per = {name: Tolerance(precision, atol=float(v), rtol=settings.get("rtol"))
           for name, v in (settings.get("tolerance") or {}).items()}
    return ValidateSettings(
        samples=int(settings.get("samples", 1)), threads=settings.get("threads"),
        tolerance=Tolerance(precision, atol=settings.get("atol"), rtol=settings.get("rtol")), per_output=per,
        latency=LatencySettings(warmup_runs=5, runs=int(settings.get("latency_runs", 30))),
        max_latency_ratio=settings.get("max_latency_ratio"),
    )


def _status_of(report) -> str:
    return {"pass": "pass", "parity_failed": "parity_failed", "latency_exceeded": "latency_exceeded"}[report.status]


def run_job(job: dict[str, Any], *, check_only: bool = False) -> dict[str, Any]:
    from fwconv.convert.job import precision_of
    from fwconv.errors import FwconvError, ParityError, UnsupportedOpError

    start = time.perf_counter()
    result: dict[str, Any] = {"id": f"{job['model']}:{job['target']}", "model": job["model"], "target": job["target"],
                              "artifact": job["output"], "status": "pass", "messages": []}
    try:
        options = convert_options(job["settings"])
        settings = validate_settings(job["settings"], precision_of(options))
        if check_only:
            from fwconv.validators import validate

            if not os.path.exists(job["output"]):
                raise FwconvError(f"no artifact at {job['output']} (run the gate without --check-only first)")
            user = None
            if options.inputs_file:
                from fwconv.specs import load_npz

                user = load_npz(options.inputs_file)
            report = validate(job["source"], job["output"], settings=settings, user_inputs=user,
                              ref_specs=options.input_specs or None)
        else:
            from fwconv.convert.pipeline import convert

            try:
                report = convert(job["source"], job["target"], job["output"], options, settings).validation
            except ParityError as exc:  # kept on disk (keep_failed) so it can be inspected
                report = exc.report
        result["validation"] = report.to_dict()
        result["status"] = _status_of(report)
        result["messages"] += report.failures()
        if "candidate" in report.latency:
            result["latency"] = {k: report.latency["candidate"].to_dict()[k] for k in ("p50_ms", "p90_ms", "p99_ms", "runs")}
        if job.get("golden"):
            from fwconv.gate.golden import compare_to_golden

            result["golden"] = {}
            for label, model in (("source", job["source"]), ("artifact", job["output"])):
                g = compare_to_golden(job["golden"], model, dataclasses.replace(settings, latency=None))
                result["golden"][label] = {"status": g.status, "failures": g.failures()}
                if not g.parity_passed:
                    result["messages"] += [f"golden ({label}): {f}" for f in g.failures()]
                    if result["status"] == "pass":
                        result["status"] = "golden_failed"
    except UnsupportedOpError as exc:
        result["status"], result["messages"] = "unsupported_op", [exc.one_line()]
    except FwconvError as exc:
        result["status"], result["messages"] = "error", [exc.one_line()]
    except Exception as exc:  # a bug or a library failure: reported for this job, the gate goes on
        result["status"] = "error"
        result["messages"] = [f"{type(exc).__name__}: {exc}".splitlines()[0]]
        result["traceback"] = traceback.format_exc()[-4000:]
    result["exit_code"] = STATUS_CODE[result["status"]]
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def main(argv: list[str]) -> int:
    from fwconv import signals

    signals.install()  # SIGTERM from the gate: staging and scratch dirs are removed on the way out
    job_path, result_path = argv[1], argv[2]
    with open(job_path) as f:
        payload = json.load(f)
    result = run_job(payload["job"], check_only=payload.get("check_only", False))
    with open(result_path, "w") as f:
        json.dump(result, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
