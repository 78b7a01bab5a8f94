"""Every pair rule, its weight and margin, the per-prompt filters (dedup, identical,
length, cap) with the rules' priority, and the counting shortcut past the cap."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rewardops_trainer.telemetry.rules import (
    RULE_NAMES,
    RULES,
    Group,
    Interaction,
    Pair,
    RuleSettings,
    _normal,
    select_pairs,
)

SETTINGS = RuleSettings(max_pairs_per_prompt=8, max_text_chars=200, dwell_threshold_ms=10_000)
GOOD, BAD, MID = "a specific, polite answer", "a rude answer", "a middling answer"


def ix(response: str, **feedback: Any) -> Interaction:
    fields: dict[str, Any] = {
        "order": 0,
        "prompt_id": "p-1",
        "prompt": "the question",
        "session_id": "s-1",
        "response_id": "r-" + response,
        "response": response,
        "thumb": None,
        "rating": None,
        "other_response_id": None,
        "other_response": None,
        "choice": None,
        "correction": None,
        "regenerated": False,
        "accepted": False,
        "dwell_ms": None,
        "copied": False,
        "reported_wrong": False,
    }
    fields.update(feedback)
    return Interaction(**fields)


def pairs_of(*events: Interaction, settings: RuleSettings = SETTINGS) -> list[Pair]:
    return select_pairs(list(events), settings, Counter())


def as_tuples(pairs: list[Pair]) -> list[tuple[str, str, str, float, float]]:
    return [(p.rule, p.chosen, p.rejected, p.weight, p.margin) for p in pairs]


@pytest.mark.parametrize("choice", ["this", "other"])
def test_comparison_follows_the_choice(choice: str) -> None:
    event = ix(GOOD, other_response_id="r-bad", other_response=BAD, choice=choice)
    expected = (GOOD, BAD) if choice == "this" else (BAD, GOOD)
    assert as_tuples(pairs_of(event)) == [("comparison", *expected, 1.0, 1.0)]


def test_correction_beats_the_original() -> None:
    assert as_tuples(pairs_of(ix(BAD, correction=GOOD))) == [("correction", GOOD, BAD, 1.0, 1.0)]
    assert pairs_of(ix(BAD, correction="   ")) == []


def test_thumbs_pair_net_up_with_net_down_across_sessions() -> None:
    events = [
        ix(GOOD, thumb="up"),
        ix(GOOD, thumb="up", session_id="s-2"),
        ix(GOOD, thumb="down", session_id="s-3"),
        ix(BAD, thumb="down", session_id="s-4"),
        ix(MID, thumb="up"),
        ix(MID, thumb="down"),  # net zero: in no thumbs pair
    ]
    assert as_tuples(pairs_of(*events)) == [("thumbs", GOOD, BAD, 0.8, 0.5)]


def test_reported_wrong_loses_to_unreported_but_not_to_thumbed_down() -> None:
    events = [ix(BAD, reported_wrong=True), ix(GOOD), ix(MID, thumb="down")]
    assert as_tuples(pairs_of(*events)) == [("reported_wrong", GOOD, BAD, 0.7, 0.5)]


@pytest.mark.parametrize(
    "complaint",
    [
        {"regenerated": True},
        {"correction": "something else"},
        {"rating": 2},
        {"other_response_id": "r-x", "other_response": "x", "choice": "other"},
    ],
)
def test_a_response_with_any_complaint_does_not_beat_a_reported_one(
    complaint: dict[str, Any],
) -> None:
    events = [ix(BAD, reported_wrong=True), ix(MID, **complaint)]
    assert [p for p in pairs_of(*events) if p.rule == "reported_wrong"] == []


def test_rating_needs_a_two_star_gap_and_scales_the_margin() -> None:
    events = [ix(GOOD, rating=5), ix(GOOD, rating=4), ix(MID, rating=3), ix(BAD, rating=1)]
    result = as_tuples(pairs_of(*events))
    assert sorted(result) == sorted(
        [("rating", GOOD, BAD, 0.6, 3.5 / 4), ("rating", MID, BAD, 0.6, 0.5)]
    )


def test_regeneration_prefers_the_accepted_answer_in_the_same_session() -> None:
    events = [
        ix(BAD, regenerated=True),
        ix(GOOD, accepted=True),
        ix(MID, regenerated=True, session_id="s-other"),  # another session: no pair with GOOD
    ]
    assert as_tuples(pairs_of(*events)) == [("regeneration", GOOD, BAD, 0.6, 0.3)]


def test_implicit_needs_the_threshold_and_agreeing_signals() -> None:
    assert as_tuples(pairs_of(ix(GOOD, dwell_ms=20_000), ix(BAD, dwell_ms=5_000))) == [
        ("implicit", GOOD, BAD, 0.2, 0.1)
    ]
    # Below the dwell threshold: no pair.
    assert pairs_of(ix(GOOD, dwell_ms=14_000), ix(BAD, dwell_ms=5_000)) == []
    # Copy alone decides when dwell is close.
    assert as_tuples(pairs_of(ix(GOOD, dwell_ms=5_000, copied=True), ix(BAD, dwell_ms=6_000))) == [
        ("implicit", GOOD, BAD, 0.2, 0.1)
    ]
    # Copy and dwell disagree: no pair either way.
    assert pairs_of(ix(GOOD, dwell_ms=1_000, copied=True), ix(BAD, dwell_ms=30_000)) == []
    # A response reported wrong never wins on implicit signals.
    events = [ix(BAD, dwell_ms=40_000, reported_wrong=True), ix(GOOD, dwell_ms=1_000)]
    assert [p.rule for p in pairs_of(*events)] == ["reported_wrong"]


def test_identical_texts_empty_texts_and_long_texts_are_dropped() -> None:
    stats: Counter[str] = Counter()
    events = [
        ix(GOOD, correction=GOOD + "  "),
        ix(BAD, correction="x" * 201, response_id="r-2"),
        ix("", correction="fine", response_id="r-3"),
    ]
    assert select_pairs(events, SETTINGS, stats) == []
    assert stats["dropped:identical"] == 1
    assert stats["dropped:too_long"] == 1
    assert stats["dropped:empty"] == 1
    long_prompt = ix(BAD, correction=GOOD, prompt="q" * 201)
    assert pairs_of(long_prompt) == []


def test_duplicates_keep_the_highest_priority_rule() -> None:
    stats: Counter[str] = Counter()
    events = [
        ix(BAD, thumb="down", correction=GOOD),
        ix(GOOD, thumb="up"),
        ix(BAD, other_response_id="r-g", other_response=GOOD, choice="other"),
    ]
    pairs = select_pairs(events, SETTINGS, stats)
    assert as_tuples(pairs) == [("comparison", GOOD, BAD, 1.0, 1.0)]
    assert stats["dropped:duplicate"] == 2
    assert stats["candidates:correction"] == 1
    assert stats["candidates:thumbs"] == 1


def test_cap_per_prompt_keeps_higher_priority_rules_first() -> None:
    settings = RuleSettings(max_pairs_per_prompt=3, max_text_chars=200, dwell_threshold_ms=10_000)
    events = [ix(f"bad {i}", correction=f"good {i}") for i in range(2)]
    events += [ix(f"up {i}", thumb="up") for i in range(3)] + [ix("down", thumb="down")]
    stats: Counter[str] = Counter()
    pairs = select_pairs(events, settings, stats)
    assert [p.rule for p in pairs] == ["correction", "correction", "thumbs"]
    assert stats["dropped:over_cap"] == 2


def test_rule_order_is_priority_order() -> None:
    assert RULE_NAMES == (
        "comparison",
        "correction",
        "thumbs",
        "reported_wrong",
        "rating",
        "regeneration",
        "implicit",
    )


def test_pair_rows_are_trl_shaped() -> None:
    (pair,) = pairs_of(ix(BAD, correction=GOOD))
    assert pair.to_row() == {
        "prompt": "the question",
        "chosen": GOOD,
        "rejected": BAD,
        "weight": 1.0,
        "margin": 1.0,
        "rule": "correction",
        "prompt_id": "p-1",
    }


responses = st.sampled_from(["r-0", "r-1", "r-2", "r-3", "r-4"])
interactions = st.builds(
    Interaction,
    order=st.integers(0, 100),
    prompt_id=st.just("p-1"),
    prompt=st.just("the question"),
    session_id=st.sampled_from(["s-0", "s-1", "s-2"]),
    response_id=responses,
    response=st.sampled_from([GOOD, BAD, MID, ""]),
    thumb=st.sampled_from([None, "up", "down"]),
    rating=st.none() | st.integers(1, 5),
    other_response_id=st.none() | responses,
    other_response=st.none() | st.sampled_from([GOOD, BAD]),
    choice=st.sampled_from([None, "this", "other"]),
    correction=st.sampled_from([None, "", " ", GOOD]),
    regenerated=st.booleans(),
    accepted=st.booleans(),
    # Few distinct values, so that dwell gaps often equal the threshold exactly.
    dwell_ms=st.none() | st.sampled_from([0, 5_000, 10_000, 15_000, 30_000]),
    copied=st.booleans(),
    reported_wrong=st.booleans(),
)
rule_settings = st.builds(
    RuleSettings,
    max_pairs_per_prompt=st.integers(1, 8),
    max_text_chars=st.just(200),
    dwell_threshold_ms=st.sampled_from([-5_000, 0, 5_000, 10_000]),
    rating_gap=st.sampled_from([-1.0, 0.0, 0.5, 2.0, 4.0]),
)


@given(st.lists(interactions, min_size=1, max_size=12), rule_settings)
# Dwell gaps exactly at the threshold, either way, with and without a copy.
@example(
    [ix(GOOD, dwell_ms=0, copied=True), ix(BAD, dwell_ms=5_000)],
    RuleSettings(max_pairs_per_prompt=8, max_text_chars=200, dwell_threshold_ms=5_000),
)
@example(
    [ix(GOOD, dwell_ms=5_000, copied=True), ix(BAD, dwell_ms=0, copied=True)],
    RuleSettings(max_pairs_per_prompt=8, max_text_chars=200, dwell_threshold_ms=5_000),
)
@example(
    [ix(GOOD, dwell_ms=0), ix(BAD, dwell_ms=0), ix(MID, dwell_ms=0, copied=True)],
    RuleSettings(max_pairs_per_prompt=8, max_text_chars=200, dwell_threshold_ms=0),
)
def test_each_rule_counts_what_it_would_build(
    events: list[Interaction], settings: RuleSettings
) -> None:
    # Once a prompt's cap is full, a rule's candidates are counted, not built: both ways
    # must agree, or the manifest's candidate and over-cap counts would drift.
    group = Group.of(events)
    for rule, build, count in RULES:
        assert count(group, settings) == len(build(group, settings)), rule.name


@given(st.text(alphabet=st.characters(categories=["L", "Z", "Cc"]), max_size=30))
def test_folding_whitespace_keeps_folded_texts_as_they_are(text: str) -> None:
    assert _normal(text, {}) == " ".join(text.split())
