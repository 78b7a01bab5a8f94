"""Evaluation metrics on hand-computed inputs."""

from __future__ import annotations

import math

import pytest
import torch

from rewardops_trainer.contract import EvalMetrics
from rewardops_trainer.evaluate import calibration_error, compute_metrics, pearson


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
