"""Evaluation metrics on hand-computed inputs."""

from __future__ import annotations

import math

import pytest
import torch

from rewardops_trainer.contract import EvalMetrics
from rewardops_trainer.contract.report import SCORE_BUCKETS
from rewardops_trainer.evaluate import calibration_error, compute_metrics, pearson, score_counts
from rewardops_trainer.serve.metrics import ServeMetrics


def _metrics(chosen: list[float], rejected: list[float], **kw: object) -> EvalMetrics:
    n = len(chosen)
    args: dict[str, object] = {
        "rules": ["a"] * n,
        "chosen_lengths": [10] * n,
        "rejected_lengths": [20] * n,
        "seconds": 0.5,
    }
    args.update(kw)
    return compute_metrics(torch.tensor(chosen), torch.tensor(rejected), **args)  # type: ignore[arg-type]


def test_accuracy_loss_margin_and_rewards() -> None:
    # diffs: 2, -1, 0 (a tie counts as wrong)
    m = _metrics([3.0, 0.0, 1.0], [1.0, 1.0, 1.0])
    assert m.pairs == 3
    assert m.accuracy == pytest.approx(1 / 3)
    expected_loss = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0)) + math.log(2.0)) / 3
    assert m.mean_loss == pytest.approx(expected_loss)
    assert m.mean_margin == pytest.approx(1 / 3)
    rewards = [3.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    mean = sum(rewards) / 6
    assert m.reward_mean == pytest.approx(mean)
    assert m.reward_std == pytest.approx(math.sqrt(sum((r - mean) ** 2 for r in rewards) / 6))
    assert m.latency_ms_per_pair == pytest.approx(500 / 3)


def test_slices_by_rule() -> None:
    m = _metrics([1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0], rules=["x", "x", "y", "y"])
    assert set(m.slices) == {"x", "y"}
    assert m.slices["x"].pairs == 2
    assert m.slices["x"].accuracy == pytest.approx(0.5)
    assert m.slices["y"].accuracy == pytest.approx(0.5)


def test_calibration_error_known_values() -> None:
    # d = 0: p = 0.5 for both orientations, outcomes 1 and 0 share the bin -> perfectly calibrated
    assert calibration_error(torch.tensor([0.0, 0.0])) == pytest.approx(0.0)
    # one pair, p = sigmoid(ln 4) = 0.8 and it is right: bins [0.8,0.9) gap 0.2, [0.2,0.3) gap 0.2
    assert calibration_error(torch.tensor([math.log(4.0)])) == pytest.approx(0.2)
    # confident and wrong: p = sigmoid(-ln 9) = 0.1 for the winner; gaps 0.9 each
    assert calibration_error(torch.tensor([-math.log(9.0)])) == pytest.approx(0.9)
    # calibrated mix: four pairs at p = 0.75, three right and one wrong
    d = math.log(3.0)
    assert calibration_error(torch.tensor([d, d, d, -d])) == pytest.approx(0.0, abs=1e-6)


def test_pearson_known_values() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(x, torch.tensor([1.0, -1.0, -1.0, 1.0])) == pytest.approx(0.0)
    assert pearson(x, torch.ones(4)) == 0.0
    assert pearson(torch.tensor([1.0]), torch.tensor([2.0])) == 0.0


def test_length_correlation_flags_length_reward() -> None:
    # Reward equals length: a length-hacking model correlates perfectly.
    m = _metrics([5.0, 7.0], [30.0, 2.0], chosen_lengths=[5, 7], rejected_lengths=[30, 2])
    assert m.length_correlation == pytest.approx(1.0)
    assert m.accuracy == pytest.approx(0.5)


def test_empty_set_gives_zero_metrics() -> None:
    m = compute_metrics(
        torch.tensor([]),
        torch.tensor([]),
        rules=[],
        chosen_lengths=[],
        rejected_lengths=[],
        seconds=0.0,
    )
    assert m.pairs == 0
    assert m.accuracy == 0.0
    assert m.score_counts == [0] * (len(SCORE_BUCKETS) + 1)


def _bucket(bound: float) -> int:
    return SCORE_BUCKETS.index(bound)


def test_score_counts_put_each_reward_in_its_le_bucket() -> None:
    # chosen and rejected rewards both count: 8 rewards in all
    m = _metrics([-20.0, 0.0, 0.25, 20.0], [-25.0, -0.5, 20.5, 1e9])
    counts = m.score_counts
    assert counts is not None
    assert len(counts) == len(SCORE_BUCKETS) + 1
    expected = [0] * (len(SCORE_BUCKETS) + 1)
    expected[_bucket(-20.0)] = 2  # -25 (below the lowest bound) and -20 (on it)
    expected[_bucket(-0.5)] = 1  # on the bound: le semantics
    expected[_bucket(0.0)] = 1
    expected[_bucket(0.5)] = 1  # 0.25 is in (0, 0.5]
    expected[_bucket(20.0)] = 1
    expected[-1] = 2  # 20.5 and 1e9, above the highest bound
    assert counts == expected
    assert sum(counts) == 2 * m.pairs


def test_score_counts_just_above_a_bound_go_to_the_next_bucket() -> None:
    counts = score_counts([-10.0, math.nextafter(-10.0, 0.0)])
    assert counts[_bucket(-10.0)] == 1
    assert counts[_bucket(-5.0)] == 1


def test_score_counts_skip_nan_and_place_infinities_at_the_ends() -> None:
    counts = score_counts([math.nan, -math.inf, math.inf])
    assert counts[0] == 1
    assert counts[-1] == 1
    assert sum(counts) == 2


def test_score_counts_match_the_serving_histogram() -> None:
    # The offline counts and the live rewardops_serve_score histogram share their edges and
    # their le semantics, so the same rewards give the same (de-cumulated) buckets.
    rewards = [*SCORE_BUCKETS, -30.0, -7.5, -0.1, 0.1, 4.0, 15.0, 99.0, math.nan]
    metrics = ServeMetrics()
    metrics.observe_forward(rewards, 0.01)
    cumulative = [
        sample.value
        for family in metrics.registry.collect()
        if family.name == "rewardops_serve_score"
        for sample in family.samples
        if sample.name == "rewardops_serve_score_bucket"
    ]
    assert len(cumulative) == len(SCORE_BUCKETS) + 1
    live = [int(b - a) for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]
    assert live == score_counts(rewards)
