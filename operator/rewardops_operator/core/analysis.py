"""Live analysis after a rollout: tally check measurements, decide pass, fail or inconclusive.

Pure: the driver measures (``rewardops_operator.analysis`` providers) when :func:`wanted` says
so and hands the numbers in ``Observations.analysis``; this module only counts and judges. The
fresh-feedback check is measured by evaluation Jobs instead (:mod:`feedback` records each result
with :func:`record_one`). Time is ``observed.now``. Limits are inclusive, like the offline gates
(docs/gates-and-analysis.md).

Rules, per check over the window that starts when the rollout completes:

- a measurement passes when every value lies within the check's min/max, fails when any value
  lies outside, and is inconclusive when there is no usable value (provider unreachable, no
  series, NaN, too few samples);
- ``failureLimit`` failed measurements of one check fail the analysis at once;
- more than ``inconclusiveLimit`` inconclusive measurements of one check make it inconclusive;
- once ``duration`` has passed, the analysis passes if every check passed at least once, and
  is inconclusive otherwise (nothing was learnt about that check); a fresh-feedback evaluation
  still under way is waited for.

A failed or inconclusive analysis rolls back; the reconciler does that, as for a failed rollout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from rewardops_operator.api.models import (
    AnalysisCheck,
    AnalysisPhase,
    AnalysisSpec,
    AnalysisStatus,
    CheckStatus,
    Phase,
    RewardModelUpdate,
)
from rewardops_operator.api.types import parse_duration
from rewardops_operator.core.gates import TOLERANCE
from rewardops_operator.core.observations import AnalysisMeasurements, CheckMeasurement

#: Condition type of the live analysis (alongside Trained, GatesPassed, Promoted ...).
ANALYSIS_PASSED = "AnalysisPassed"
#: Condition reasons, also the Event reasons and the RolledBack reasons.
RUNNING = "AnalysisRunning"
PASSED = "AnalysisPassed"
FAILED = "AnalysisFailed"
INCONCLUSIVE = "AnalysisInconclusive"


@dataclass(frozen=True)
class Verdict:
    phase: AnalysisPhase
    reason: str
    message: str


def start(spec: AnalysisSpec, now: datetime) -> AnalysisStatus:
    return AnalysisStatus(
        started_at=now,
        checks=[CheckStatus(name=check.name, limit=limit_text(check)) for check in spec.checks],
        message=f"watching {len(spec.checks)} check(s) for {spec.duration}, every {spec.interval}",
    )


def next_due(spec: AnalysisSpec, status: AnalysisStatus) -> datetime:
    # The first measurement waits one interval: right after the rollout there is no traffic.
    return (status.last_measured_at or status.started_at) + parse_duration(spec.interval)


def end(spec: AnalysisSpec, status: AnalysisStatus) -> datetime:
    return status.started_at + parse_duration(spec.duration)


def is_due(spec: AnalysisSpec, status: AnalysisStatus, now: datetime) -> bool:
    return status.phase == AnalysisPhase.RUNNING and now >= next_due(spec, status)


def wanted(update: RewardModelUpdate, now: datetime) -> AnalysisSpec | None:
    """The checks a driver should measure for ``update`` at ``now``: the analysis spec while
    the update is Verifying with an analysis running and a measurement is due, else None."""
    spec = update.spec.promotion.analysis
    status = update.status
    if spec is None or status is None or status.analysis is None:
        return None
    if status.phase != Phase.VERIFYING or not is_due(spec, status.analysis, now):
        return None
    return spec


def limit_text(check: AnalysisCheck) -> str:
    parts = []
    if check.min is not None:
        parts.append(f"min {check.min}")
    if check.max is not None:
        parts.append(f"max {check.max}")
    return ", ".join(parts)


def number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def _outside(check: AnalysisCheck, value: float) -> float:
    """How far ``value`` lies outside the check's limits (0 inside)."""
    above = value - float(check.max) if check.max is not None else 0.0
    below = float(check.min) - value if check.min is not None else 0.0
    distance = max(above, below, 0.0)
    return distance if distance > TOLERANCE else 0.0


def _judge_one(check: AnalysisCheck, measured: CheckMeasurement | None) -> tuple[str, str, str]:
    """(outcome, value text, message) of one measurement; outcome passed/failed/inconclusive."""
    if measured is None:
        return "inconclusive", "", "no measurement"
    if measured.error is not None:
        return "inconclusive", "", f"provider unreachable: {measured.error}"
    values = [value for value in measured.values if not math.isnan(value)]
    if not values:
        return "inconclusive", "", measured.detail or "no data"
    # Report the value that decides: the one furthest outside, else the one nearest a limit.
    worst = max(values, key=lambda v: (_outside(check, v), v if check.max is not None else -v))
    detail = f" ({measured.detail})" if measured.detail else ""
    series = f" (worst of {len(values)})" if len(values) > 1 else ""
    if _outside(check, worst) > 0:
        side = "above max" if check.max is not None and worst > float(check.max) else "below min"
        limit = check.max if side == "above max" else check.min
        return "failed", number(worst), f"value {number(worst)}{series} {side} {limit}{detail}"
    return (
        "passed",
        number(worst),
        f"value {number(worst)}{series} within {limit_text(check)}{detail}",
    )


def _tally(
    check: AnalysisCheck, tally: CheckStatus, measured: CheckMeasurement | None
) -> CheckStatus:
    outcome, value, message = _judge_one(check, measured)
    return tally.model_copy(
        update={
            outcome: getattr(tally, outcome) + 1,
            "last_value": value or None,
            "limit": limit_text(check),
            "last_message": message,
        }
    )


def _replace_check(
    spec: AnalysisSpec, status: AnalysisStatus, name: str, change: CheckStatus
) -> list[CheckStatus]:
    previous = {c.name: c for c in status.checks}
    previous[name] = change
    return [previous.get(check.name) or CheckStatus(name=check.name) for check in spec.checks]


def record(
    spec: AnalysisSpec, status: AnalysisStatus, round_: AnalysisMeasurements, now: datetime
) -> AnalysisStatus:
    """The tally after one round of measurements. Fresh-feedback checks are measured by their
    evaluation Jobs instead (:func:`record_one`), so a round leaves them as they are."""
    measured = {m.name: m for m in round_.checks}
    previous = {c.name: c for c in status.checks}
    checks = []
    for check in spec.checks:
        tally = previous.get(check.name) or CheckStatus(name=check.name)
        if check.fresh_feedback is None:
            tally = _tally(check, tally, measured.get(check.name))
        checks.append(tally)
    return status.model_copy(
        update={"checks": checks, "last_measured_at": now, "measurements": status.measurements + 1}
    )


def record_one(
    spec: AnalysisSpec, status: AnalysisStatus, check: AnalysisCheck, measured: CheckMeasurement
) -> AnalysisStatus:
    """The tally after one measurement of one check, taken outside the rounds."""
    tally = tally_of(status, check) or CheckStatus(name=check.name)
    return status.model_copy(
        update={"checks": _replace_check(spec, status, check.name, _tally(check, tally, measured))}
    )


def note(
    spec: AnalysisSpec, status: AnalysisStatus, check: AnalysisCheck, message: str
) -> AnalysisStatus:
    """Say where a check stands without counting a measurement (e.g. waiting for data)."""
    tally = tally_of(status, check) or CheckStatus(name=check.name)
    change = tally.model_copy(update={"last_message": message, "limit": limit_text(check)})
    return status.model_copy(update={"checks": _replace_check(spec, status, check.name, change)})


def tally_of(status: AnalysisStatus, check: AnalysisCheck) -> CheckStatus | None:
    return next((c for c in status.checks if c.name == check.name), None)


def has_passed(status: AnalysisStatus, check: AnalysisCheck) -> bool:
    tally = tally_of(status, check)
    return tally is not None and tally.passed > 0


def feedback_check(spec: AnalysisSpec) -> AnalysisCheck | None:
    """The analysis's fresh-feedback check (at most one; the API enforces it)."""
    return next((check for check in spec.checks if check.fresh_feedback is not None), None)


def _awaiting_feedback(spec: AnalysisSpec, status: AnalysisStatus) -> str | None:
    """The evaluation Job whose result the end of the window waits for, if any."""
    check = feedback_check(spec)
    job = status.feedback.job_name if status.feedback is not None else None
    if check is None or job is None:
        return None
    return job if not has_passed(status, check) else None


def judge(spec: AnalysisSpec, status: AnalysisStatus, now: datetime) -> Verdict:
    tallies = {c.name: c for c in status.checks}
    empty = CheckStatus(name="")
    for check in spec.checks:
        tally = tallies.get(check.name, empty)
        if tally.failed >= spec.failure_limit:
            return Verdict(
                AnalysisPhase.FAILED,
                FAILED,
                f"live check {check.name} failed {tally.failed} of {tally.measured} "
                f"measurement(s) (failureLimit {spec.failure_limit}): {tally.last_message}",
            )
    for check in spec.checks:
        tally = tallies.get(check.name, empty)
        if tally.inconclusive > spec.inconclusive_limit:
            return Verdict(
                AnalysisPhase.INCONCLUSIVE,
                INCONCLUSIVE,
                f"live check {check.name} was inconclusive {tally.inconclusive} time(s) "
                f"(inconclusiveLimit {spec.inconclusive_limit}): {tally.last_message}",
            )
    if now < end(spec, status):
        return Verdict(
            AnalysisPhase.RUNNING,
            RUNNING,
            f"{status.measurements} measurement(s) so far; window ends "
            f"{end(spec, status).isoformat()}; " + _summary(spec, tallies),
        )
    awaited = _awaiting_feedback(spec, status)
    if awaited is not None:
        # The evaluation started inside the window; its answer still belongs to it.
        return Verdict(
            AnalysisPhase.RUNNING,
            RUNNING,
            f"window ended; waiting for the fresh-feedback evaluation Job {awaited}; "
            + _summary(spec, tallies),
        )
    unknown = [c.name for c in spec.checks if tallies.get(c.name, empty).passed == 0]
    if unknown:
        return Verdict(
            AnalysisPhase.INCONCLUSIVE,
            INCONCLUSIVE,
            f"after {spec.duration}, no passing measurement of live check(s) "
            f"{', '.join(unknown)}: " + _summary(spec, tallies),
        )
    return Verdict(
        AnalysisPhase.PASSED,
        PASSED,
        f"all {len(spec.checks)} live check(s) passed over {spec.duration} "
        f"({status.measurements} measurement(s)): " + _summary(spec, tallies),
    )


def _summary(spec: AnalysisSpec, tallies: dict[str, CheckStatus]) -> str:
    parts = []
    for check in spec.checks:
        tally = tallies.get(check.name)
        if tally is None or tally.measured == 0:
            waiting = f": {tally.last_message}" if tally is not None and tally.last_message else ""
            parts.append(f"{check.name} not measured yet ({limit_text(check)}){waiting}")
        elif tally.last_value is None:
            parts.append(f"{check.name} inconclusive: {tally.last_message}")
        else:
            parts.append(f"{check.name} {tally.last_value} ({limit_text(check)})")
    return "; ".join(parts)


def wait_seconds(spec: AnalysisSpec, status: AnalysisStatus, now: datetime) -> float:
    """Seconds to the next measurement or the end of the window, whichever is first."""
    until = min(next_due(spec, status), end(spec, status)) - now
    return max(until, timedelta(seconds=1)).total_seconds()
