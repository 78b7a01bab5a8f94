"""The pairwise loss, batch planning, the schedule and pair-file parsing: pure functions."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from rewardops_trainer.errors import DataError
from rewardops_trainer.train import lr_factor, pairwise_loss, plan_epoch, read_pairs


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_loss_matches_hand_computation() -> None:
    loss = pairwise_loss(_t(2.0, 0.0), _t(1.0, 0.0), margin=_t(0.0, 0.0), weight=_t(1.0, 1.0))
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_loss_margin_and_weights() -> None:
    # margin 1 turns a diff of 1 into 0: loss log 2; weights 3:1 give a weighted mean.
    loss = pairwise_loss(_t(1.0, 5.0), _t(0.0, 0.0), margin=_t(1.0, 0.0), weight=_t(3.0, 1.0))
    expected = (3 * math.log(2.0) + 1 * math.log1p(math.exp(-5.0))) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_reward_centering_adds_mean_square_of_sums() -> None:
    base = pairwise_loss(_t(1.0, 2.0), _t(3.0, 0.0), margin=_t(0.0, 0.0), weight=_t(1.0, 1.0))
    centered = pairwise_loss(
        _t(1.0, 2.0), _t(3.0, 0.0), margin=_t(0.0, 0.0), weight=_t(1.0, 1.0), centering=0.1
    )
    assert float(centered - base) == pytest.approx(0.1 * (16.0 + 4.0) / 2, rel=1e-6)


def test_micro_batch_losses_sum_to_the_step_loss() -> None:
    c, r, m, w = _t(1.0, -1.0, 0.5, 2.0), _t(0.0, 0.0, 1.0, 1.0), _t(0, 0, 0.2, 0), _t(1, 2, 1, 4)
    whole = pairwise_loss(c, r, m, w, centering=0.05)
    parts = sum(
        float(
            pairwise_loss(c[s], r[s], m[s], w[s], centering=0.05, total_weight=8.0, total_pairs=4)
        )
        for s in (slice(0, 1), slice(1, 4))
    )
    assert parts == pytest.approx(float(whole), rel=1e-6)


def test_plan_covers_every_pair_once_and_groups_lengths() -> None:
    lengths = [i % 97 for i in range(1000)]
    plan = plan_epoch(lengths, batch_size=10, seed=1, epoch=0)
    flat = sorted(i for batch in plan for i in batch)
    assert flat == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plan) / len(plan)
    assert spread < 10  # random batches of 10 from 0..96 would spread about 80
    assert plan == plan_epoch(lengths, batch_size=10, seed=1, epoch=0)
    assert plan != plan_epoch(lengths, batch_size=10, seed=1, epoch=1)


def test_schedule_warms_up_then_decays_to_zero() -> None:
    factors = [lr_factor(step, total=10, warmup=2) for step in range(10)]
    assert factors[0] == pytest.approx(0.5)
    assert factors[1] == pytest.approx(1.0)
    assert factors[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[2:]))
    assert factors[-1] == pytest.approx(1 / 8)
    assert lr_factor(0, total=4, warmup=0) == pytest.approx(1.0)


def test_read_pairs_names_the_bad_line(tmp_path: Path) -> None:
    good = {"prompt": "p", "chosen": "c", "rejected": "r", "weight": 2.0, "rule": "click"}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:2: .*rejected"):
        read_pairs(path)
    path.write_text(json.dumps(good) + "\n")
    pairs = read_pairs(path)
    assert pairs.weights == [2.0]
    assert pairs.margins == [0.0]
    assert pairs.rules == ["click"]
