from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rewardops_operator.api.conditions import find, is_true, set_condition

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_is_appended_with_generation() -> None:
    conditions = set_condition([], "Trained", "True", "JobSucceeded", "ok", generation=2, now=T0)
    assert len(conditions) == 1
    assert conditions[0].observed_generation == 2
    assert conditions[0].last_transition_time == T0
    assert is_true(conditions, "Trained")


def test_same_status_keeps_transition_time_but_updates_message() -> None:
    first = set_condition([], "Ready", "False", "Training", "a", generation=1, now=T0)
    second = set_condition(first, "Ready", "False", "Evaluating", "b", generation=1, now=T1)
    found = find(second, "Ready")
    assert found is not None
    assert (found.reason, found.message, found.last_transition_time) == ("Evaluating", "b", T0)


def test_status_change_moves_transition_time_and_keeps_order() -> None:
    conditions = set_condition([], "Trained", "True", "JobSucceeded", "", generation=1, now=T0)
    conditions = set_condition(conditions, "Ready", "False", "Training", "", generation=1, now=T0)
    conditions = set_condition(
        conditions, "Trained", "False", "JobFailed", "", generation=1, now=T1
    )
    assert [c.type for c in conditions] == ["Trained", "Ready"]
    trained = find(conditions, "Trained")
    assert trained is not None
    assert trained.last_transition_time == T1
    assert not is_true(conditions, "Trained")
    assert find(conditions, "Missing") is None
