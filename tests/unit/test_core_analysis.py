"""Live analysis after a rollout: every outcome, through the core as a driver drives it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from rewardops_operator.api import conditions as cond
from rewardops_operator.api.models import AnalysisPhase, Phase, RewardModelUpdate
from rewardops_operator.core import analysis
from rewardops_operator.core.actions import Decision, ReleaseLock, SetServedModel
from rewardops_operator.core.naming import lock_holder
from rewardops_operator.core.observations import (
    AnalysisMeasurements,
    CheckMeasurement,
    Observations,
)
from rewardops_operator.core.reconcile import reconcile
from tests.unit.test_core_naming import make_update
from tests.unit.test_core_reconcile import (
    NOW,
    SERVED,
    SETTINGS,
    after,
    candidate_of,
    condition,
    events,
    message,
    phase,
    promoting,
    rolled_out,
)

ERRORS = {
    "name": "error-ratio",
    "prometheus": {"address": "http://prom:9090", "query": "sum(rate(x[1m]))"},
    "max": "0.01",
}
DRIFT = {"name": "score-drift", "servingMetrics": {"metric": "ScoreDistance"}, "max": "0.2"}


def with_analysis(**analysis_spec: Any) -> RewardModelUpdate:
    spec = {"duration": "3m", "interval": "1m", "checks": [ERRORS, DRIFT], **analysis_spec}
    return make_update({"promotion": {"analysis": spec}})


def rollout_done(
    update: RewardModelUpdate, at: datetime = NOW
) -> tuple[RewardModelUpdate, Decision]:
    """Promote and complete the rollout: the analysis starts."""
    update = promoting(update)
    decision = reconcile(update, Observations(now=at, deployment=rolled_out(update)), SETTINGS)
    return after(update, decision), decision


def measure(
    update: RewardModelUpdate, at: datetime, **values: tuple[float, ...] | str | None
) -> tuple[RewardModelUpdate, Decision]:
    """One reconcile at ``at`` with measurements: a tuple of values, an error string, or None
    for 'answered without data'. Measured only when the core says one is due, like a driver."""
    seen = None
    if analysis.wanted(update, at) is not None:
        checks = []
        for key, value in values.items():
            name = key.replace("_", "-")
            if isinstance(value, tuple):
                checks.append(CheckMeasurement(name, value, detail="1000 samples"))
            elif isinstance(value, str):
                checks.append(CheckMeasurement(name, error=value))
            else:
                checks.append(CheckMeasurement(name, detail="only 3 requests (minSamples 100)"))
        seen = AnalysisMeasurements(tuple(checks))
    deployment = rolled_out(update)
    decision = reconcile(
        update, Observations(now=at, deployment=deployment, analysis=seen), SETTINGS
    )
    return after(update, decision), decision


def minutes(n: float) -> datetime:
    return NOW + timedelta(minutes=n)


def test_no_analysis_succeeds_when_the_rollout_completes() -> None:
    update, decision = rollout_done(make_update())
    assert phase(decision) == Phase.SUCCEEDED
    assert decision.status.analysis is None
    assert analysis.wanted(update, minutes(5)) is None


def test_rollout_complete_starts_the_window_and_keeps_the_lock() -> None:
    update, decision = rollout_done(with_analysis())
    assert phase(decision) == Phase.VERIFYING
    assert condition(decision, cond.PROMOTED) == ("True", "RolloutComplete")
    assert condition(decision, analysis.ANALYSIS_PASSED) == ("Unknown", "AnalysisRunning")
    assert not any(isinstance(a, (ReleaseLock, SetServedModel)) for a in decision.actions)
    assert ("Normal", "AnalysisRunning") in events(decision)
    state = decision.status.analysis
    assert state is not None
    assert state.started_at == NOW
    assert state.phase == AnalysisPhase.RUNNING
    assert decision.requeue_after == 30.0  # the first measurement is one interval away
    # Nothing is measured before the first interval has passed.
    assert analysis.wanted(update, minutes(0.5)) is None
    assert analysis.wanted(update, minutes(1)) is not None


def test_healthy_model_passes_after_the_window_and_records_the_numbers() -> None:
    update, _ = rollout_done(with_analysis())
    for minute in (1, 2):
        update, decision = measure(
            update, minutes(minute), error_ratio=(0.001,), score_drift=(0.05,)
        )
        assert phase(decision) == Phase.VERIFYING
        assert decision.actions == [] or events(decision) == []
    update, decision = measure(update, minutes(3), error_ratio=(0.002,), score_drift=(0.07,))
    assert phase(decision) == Phase.SUCCEEDED
    assert condition(decision, analysis.ANALYSIS_PASSED) == ("True", "AnalysisPassed")
    assert condition(decision, cond.READY) == ("True", "Succeeded")
    assert ReleaseLock("reward-scorer", lock_holder(update)) in decision.actions
    assert not any(isinstance(a, SetServedModel) for a in decision.actions)
    state = decision.status.analysis
    assert state is not None
    assert state.phase == AnalysisPhase.PASSED
    assert state.measurements == 3
    tallies = {c.name: (c.passed, c.failed, c.inconclusive, c.last_value) for c in state.checks}
    assert tallies == {"error-ratio": (3, 0, 0, "0.002"), "score-drift": (3, 0, 0, "0.07")}
    assert "error-ratio 0.002 (max 0.01)" in message(decision, analysis.ANALYSIS_PASSED)
    assert decision.status.served_model == candidate_of(update)


def test_live_score_drift_beyond_the_limit_rolls_back() -> None:
    update, _ = rollout_done(with_analysis())
    update, decision = measure(update, minutes(1), error_ratio=(0.0,), score_drift=(0.45,))
    assert phase(decision) == Phase.ROLLED_BACK
    set_model = [a for a in decision.actions if isinstance(a, SetServedModel)]
    assert [(a.model_uri, a.previous_model_uri) for a in set_model] == [
        (SERVED, candidate_of(update))
    ]
    assert ReleaseLock("reward-scorer", lock_holder(update)) in decision.actions
    assert condition(decision, cond.ROLLED_BACK) == ("True", "AnalysisFailed")
    assert condition(decision, analysis.ANALYSIS_PASSED) == ("False", "AnalysisFailed")
    assert ("Warning", "AnalysisFailed") in events(decision)
    why = message(decision, cond.ROLLED_BACK)
    assert "score-drift" in why
    assert "0.45 above max 0.2" in why
    assert "restored " + SERVED in why
    assert decision.status.served_model == SERVED
    assert decision.status.analysis is not None
    assert decision.status.analysis.phase == AnalysisPhase.FAILED


def test_failure_limit_tolerates_failures_below_it() -> None:
    update, _ = rollout_done(with_analysis(failureLimit=2))
    update, decision = measure(update, minutes(1), error_ratio=(0.05,), score_drift=(0.1,))
    assert phase(decision) == Phase.VERIFYING
    update, decision = measure(update, minutes(2), error_ratio=(0.002,), score_drift=(0.1,))
    assert phase(decision) == Phase.VERIFYING
    update, decision = measure(update, minutes(3), error_ratio=(0.03,), score_drift=(0.1,))
    assert phase(decision) == Phase.ROLLED_BACK
    assert "failed 2 of 3 measurement(s)" in message(decision, cond.ROLLED_BACK)


def test_every_series_must_pass_and_the_worst_is_reported() -> None:
    update, _ = rollout_done(with_analysis())
    update, decision = measure(
        update, minutes(1), error_ratio=(0.001, 0.5, 0.02), score_drift=(0.1,)
    )
    assert phase(decision) == Phase.ROLLED_BACK
    assert "value 0.5 (worst of 3) above max 0.01" in message(decision, cond.ROLLED_BACK)


def test_min_limit_fails_low_values() -> None:
    check = {"name": "agreement", "prometheus": ERRORS["prometheus"], "min": "0.7"}
    update, _ = rollout_done(with_analysis(checks=[check]))
    update, decision = measure(update, minutes(1), agreement=(0.65,))
    assert phase(decision) == Phase.ROLLED_BACK
    assert "0.65 below min 0.7" in message(decision, cond.ROLLED_BACK)


def test_inconclusive_measurements_within_the_limit_are_tolerated() -> None:
    update, _ = rollout_done(with_analysis(inconclusiveLimit=1))
    update, decision = measure(update, minutes(1), error_ratio=None, score_drift=(0.1,))
    assert phase(decision) == Phase.VERIFYING
    update, _ = measure(update, minutes(2), error_ratio=(0.0,), score_drift=(0.1,))
    update, decision = measure(update, minutes(3), error_ratio=(0.0,), score_drift=(0.1,))
    assert phase(decision) == Phase.SUCCEEDED
    assert decision.status.analysis is not None
    assert decision.status.analysis.checks[0].inconclusive == 1


def test_too_many_inconclusive_measurements_roll_back() -> None:
    update, _ = rollout_done(with_analysis(inconclusiveLimit=1))
    update, _ = measure(update, minutes(1), error_ratio=(0.0,), score_drift=None)
    update, decision = measure(update, minutes(2), error_ratio=(0.0,), score_drift=None)
    assert phase(decision) == Phase.ROLLED_BACK
    assert condition(decision, cond.ROLLED_BACK) == ("True", "AnalysisInconclusive")
    assert ("Warning", "AnalysisInconclusive") in events(decision)
    why = message(decision, cond.ROLLED_BACK)
    assert "score-drift was inconclusive 2 time(s)" in why
    assert "minSamples 100" in why


def test_unreachable_provider_is_inconclusive_and_named() -> None:
    update, _ = rollout_done(with_analysis(inconclusiveLimit=0))
    refused = "http://prom:9090: connection refused"
    update, decision = measure(update, minutes(1), error_ratio=refused, score_drift=(0.1,))
    assert phase(decision) == Phase.ROLLED_BACK
    assert condition(decision, cond.ROLLED_BACK) == ("True", "AnalysisInconclusive")
    assert "provider unreachable: " + refused in message(decision, cond.ROLLED_BACK)


def test_a_check_the_driver_did_not_measure_and_nan_values_are_inconclusive() -> None:
    update, _ = rollout_done(with_analysis(inconclusiveLimit=5))
    update, decision = measure(update, minutes(1), error_ratio=(float("nan"),))
    state = decision.status.analysis
    assert state is not None
    assert [(c.name, c.inconclusive) for c in state.checks] == [
        ("error-ratio", 1),
        ("score-drift", 1),
    ]
    assert state.checks[1].last_message == "no measurement"


def test_window_end_without_a_passing_measurement_is_inconclusive() -> None:
    update, _ = rollout_done(with_analysis(inconclusiveLimit=10))
    for minute in (1, 2, 3):
        update, decision = measure(update, minutes(minute), error_ratio=(0.0,), score_drift=None)
    assert phase(decision) == Phase.ROLLED_BACK
    assert condition(decision, cond.ROLLED_BACK) == ("True", "AnalysisInconclusive")
    assert "no passing measurement of live check(s) score-drift" in message(
        decision, cond.ROLLED_BACK
    )


def test_measurements_not_due_are_ignored_and_requeue_targets_the_next_one() -> None:
    update, _ = rollout_done(with_analysis(interval="2m", duration="4m"))
    early = AnalysisMeasurements((CheckMeasurement("error-ratio", (0.9,)),))
    decision = reconcile(
        update,
        Observations(now=minutes(1.5), deployment=rolled_out(update), analysis=early),
        SETTINGS,
    )
    assert phase(decision) == Phase.VERIFYING
    assert decision.status.analysis == update.status.analysis.model_copy(  # type: ignore[union-attr]
        update={"message": decision.status.analysis.message}  # type: ignore[union-attr]
    )
    assert decision.requeue_after == pytest.approx(30.0)


def test_replica_counts_and_the_rollout_deadline_no_longer_matter_during_analysis() -> None:
    update, _ = rollout_done(with_analysis(duration="20m"))
    late = minutes(15)  # past rolloutDeadlineSeconds=600 since promotion
    shaky = rolled_out(update, available_replicas=1)
    decision = reconcile(update, Observations(now=late, deployment=shaky), SETTINGS)
    assert phase(decision) == Phase.VERIFYING
    assert not any(isinstance(a, SetServedModel) for a in decision.actions)


def test_model_replaced_during_analysis_is_left_alone() -> None:
    update, _ = rollout_done(with_analysis())
    replaced = rolled_out(update, model_uri="s3://gitops/pinned/model")
    decision = reconcile(update, Observations(now=minutes(1), deployment=replaced), SETTINGS)
    assert phase(decision) == Phase.FAILED
    assert condition(decision, cond.PROMOTED) == ("False", "ModelReplaced")
    assert not any(isinstance(a, SetServedModel) for a in decision.actions)
    assert ReleaseLock("reward-scorer", lock_holder(update)) in decision.actions


def test_a_new_run_clears_the_previous_analysis() -> None:
    update, _ = rollout_done(with_analysis())
    update, decision = measure(update, minutes(1), error_ratio=(0.5,), score_drift=(0.1,))
    assert phase(decision) == Phase.ROLLED_BACK
    assert update.status is not None
    # A new training spec (generation 2) starts a new run.
    changed = make_update(
        {
            "training": {"hyperparameters": {"epochs": 2}},
            "promotion": update.spec.promotion.model_dump(mode="json", by_alias=True),
        },
        generation=2,
        status=update.status.model_dump(mode="json", by_alias=True),
    )
    decision = reconcile(
        changed, Observations(now=minutes(2), deployment=rolled_out(update)), SETTINGS
    )
    assert phase(decision) == Phase.TRAINING
    assert decision.status.analysis is None
    assert cond.find(decision.status.conditions, analysis.ANALYSIS_PASSED) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"checks": []}, "checks"),
        ({"checks": [{"name": "x", "max": "1"}]}, "exactly one of prometheus"),
        ({"checks": [{**ERRORS, "max": None}]}, "set max, min or both"),
        ({"checks": [ERRORS, ERRORS]}, "unique: error-ratio"),
        ({"interval": "5m", "duration": "1m"}, "at least one interval"),
        ({"checks": [{**ERRORS, "max": "1.5%"}]}, "max"),
        ({"checks": [{**DRIFT, "servingMetrics": {"metric": "Vibes"}}]}, "metric"),
        (
            {
                "checks": [
                    {
                        **ERRORS,
                        "prometheus": {
                            **ERRORS["prometheus"],  # type: ignore[dict-item]
                            "auth": {
                                "bearerToken": {"name": "t", "key": "k"},
                                "basic": {"secretName": "b"},
                            },
                        },
                    }
                ]
            },
            "bearerToken or basic",
        ),
    ],
)
def test_bad_analysis_specs_are_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        with_analysis(**change)
