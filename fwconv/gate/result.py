"""A gate job's result, typed: its Status decides its exit code in one place, and the gate's exit
code is the most important status among the jobs. Results travel between processes as these
objects (warm workers' pipes, Ray); JSON only where a file is written (an isolated worker's
result file, the cache, the reports)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class Status(enum.Enum):
    PASS = "pass"
    PARITY_FAILED = "parity_failed"
    GOLDEN_FAILED = "golden_failed"
    LATENCY_EXCEEDED = "latency_exceeded"
    LATENCY_REGRESSED = "latency_regressed"
    UNSUPPORTED_OP = "unsupported_op"
    STAGE_TIMEOUT = "stage_timeout"
    ERROR = "error"

    @property
    def exit_code(self) -> int:
        from fwconv.errors import FwconvError, LatencyBudgetError, ParityError, StageTimeout, UnsupportedOpError

        return {Status.PASS: 0, Status.ERROR: FwconvError.exit_code, Status.PARITY_FAILED: ParityError.exit_code,
                Status.GOLDEN_FAILED: ParityError.exit_code, Status.LATENCY_EXCEEDED: LatencyBudgetError.exit_code,
                Status.LATENCY_REGRESSED: LatencyBudgetError.exit_code,
                Status.UNSUPPORTED_OP: UnsupportedOpError.exit_code, Status.STAGE_TIMEOUT: StageTimeout.exit_code}[self]

    @property
    def failed(self) -> bool:
        """A verdict against the artifact (JUnit <failure>), as opposed to an error running the job."""
        return self not in (Status.PASS, Status.ERROR)


# The gate's exit code: any parity failure wins (it is never downgraded), then errors, unsupported
# ops, stage timeouts, latency; 0 only when every job passed.
EXIT_PRIORITY = (3, 1, 5, 6, 4)


@dataclasses.dataclass
class JobResult:
    id: str
    model: str
    target: str
    artifact: str = ""
    status: Status = Status.PASS
    messages: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    cached: bool = False
    validation: dict[str, Any] | None = None  # the ValidationReport as a dict (schema fwconv.validation)
    latency: dict[str, Any] | None = None  # the candidate's p50/p90/p99/runs
    golden: dict[str, Any] | None = None
    debug: dict[str, Any] | None = None  # debug_on_failure: the layerwise reports written, the first divergence
    latency_check: dict[str, Any] | None = None  # a baseline comparison's figures
    traceback: str | None = None

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    @classmethod
    def for_job(cls, job: dict[str, Any], **fields: Any) -> "JobResult":
        return cls(id=f"{job['model']}:{job['target']}", model=job["model"], target=job["target"],
                   artifact=job["output"], **fields)

    @classmethod
    def error(cls, job: dict[str, Any], message: str, **fields: Any) -> "JobResult":
        """A job that could not run to a verdict (a crash, a timeout, a converter error)."""
        return cls.for_job(job, status=Status.ERROR, messages=[message], **fields)

    def fail(self, status: Status, message: str) -> None:
        """Downgrade a passing job (golden drift, a latency regression); the first failure stays."""
        if self.status is Status.PASS:
            self.status = status
        self.messages.append(message)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        d["status"], d["exit_code"] = self.status.value, self.exit_code
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names} | {"status": Status(d["status"])})


def exit_code(results: list[JobResult]) -> int:
    codes = {r.exit_code for r in results}
    return next((c for c in EXIT_PRIORITY if c in codes), 0)
