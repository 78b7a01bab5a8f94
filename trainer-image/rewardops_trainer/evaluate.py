"""Evaluation of a reward model on preference pairs: the numbers in ``report.json``.

Candidate and baseline go through :func:`evaluate_model` on the same pairs, and it scores with
:func:`rewardops_trainer.model.score`, the function the serving container uses, so the report
measures what production will serve.

Definitions (``d = r_chosen - r_rejected``):

- accuracy: fraction of pairs with ``d > 0`` (a tie counts as wrong);
- mean loss: mean of ``-log sigmoid(d)``, unweighted and without margins, so models compare on
  the bare preference;
- mean margin: mean of ``d``;
- reward mean/std: over all chosen and rejected rewards (population std);
- calibration error: expected calibration error of ``p = sigmoid(d)`` in 10 equal bins over
  [0, 1]; each pair counts twice, as (p, chosen wins) and (1 - p, rejected wins), so a model
  that says 0.8 should be right 80% of the time;
- length correlation: Pearson r between reward and response length in characters over all
  responses (high values flag a model that rewards length: reward hacking); 0 when undefined;
- latency: wall-clock scoring time per pair (two texts);
- score counts: every reward (chosen and rejected) counted in its bucket of ``SCORE_BUCKETS``
  with Prometheus ``le`` semantics, so they compare with the server's ``rewardops_serve_score``.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from rewardops_trainer.contract import EvalMetrics, SliceMetrics
from rewardops_trainer.contract.report import SCORE_BUCKETS
from rewardops_trainer.model import score
from rewardops_trainer.train import PairSet

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CALIBRATION_BINS = 10


def calibration_error(diff: torch.Tensor, bins: int = CALIBRATION_BINS) -> float:
    """ECE of ``sigmoid(diff)`` as the probability that the chosen response wins."""
    if diff.numel() == 0:
        return 0.0
    p = torch.sigmoid(diff.double())
    probs = torch.cat([p, 1.0 - p])
    outcomes = torch.cat([torch.ones_like(p), torch.zeros_like(p)])
    # Bin b holds [b/bins, (b+1)/bins); p == 1.0 falls into the last bin.
    index = torch.clamp((probs * bins).long(), max=bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        if count:
            gap = abs(float(probs[mask].mean()) - float(outcomes[mask].mean()))
            total += count / probs.numel() * gap
    return total


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation, 0 when either side is constant or there are fewer than 2 points."""
    if x.numel() < 2:
        return 0.0
    x = x.double() - x.double().mean()
    y = y.double() - y.double().mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    if denominator == 0.0:
        return 0.0
    return max(-1.0, min(1.0, float((x * y).sum()) / denominator))


def score_counts(values: Iterable[float]) -> list[int]:
    """How many ``values`` fall in each bucket of ``SCORE_BUCKETS`` plus the one above it.

    A value equal to a bound counts in that bound's bucket (Prometheus ``le``). NaN counts
    nowhere, as in a Prometheus histogram, whose buckets it never satisfies.
    """
    counts = [0] * (len(SCORE_BUCKETS) + 1)
    for value in values:
        if not math.isnan(value):
            counts[bisect.bisect_left(SCORE_BUCKETS, value)] += 1
    return counts


def compute_metrics(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    *,
    rules: Sequence[str],
    chosen_lengths: Sequence[int],
    rejected_lengths: Sequence[int],
    seconds: float,
) -> EvalMetrics:
    """The metrics of one model on one set of pairs from its rewards."""
    n = chosen.numel()
    if n == 0:
        return EvalMetrics(
            pairs=0,
            accuracy=0.0,
            mean_loss=0.0,
            mean_margin=0.0,
            reward_mean=0.0,
            reward_std=0.0,
            calibration_error=0.0,
            length_correlation=0.0,
            latency_ms_per_pair=0.0,
            score_counts=score_counts(()),
        )
    diff = chosen.double() - rejected.double()
    correct = diff > 0
    slices: dict[str, SliceMetrics] = {}
    for rule in sorted(set(rules)):
        mask = torch.tensor([r == rule for r in rules])
        slices[rule] = SliceMetrics(
            pairs=int(mask.sum()), accuracy=float(correct[mask].double().mean())
        )
    every = torch.cat([chosen.double(), rejected.double()])
    lengths = torch.tensor([*chosen_lengths, *rejected_lengths], dtype=torch.float64)
    return EvalMetrics(
        pairs=n,
        accuracy=float(correct.double().mean()),
        mean_loss=float(-F.logsigmoid(diff).mean()),
        mean_margin=float(diff.mean()),
        reward_mean=float(every.mean()),
        reward_std=float(every.std(unbiased=False)),
        calibration_error=calibration_error(diff),
        length_correlation=pearson(every, lengths),
        latency_ms_per_pair=max(0.0, seconds * 1000.0 / n),
        slices=slices,
        score_counts=score_counts(every.tolist()),
    )


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: PairSet,
    *,
    max_length: int,
    device: str | torch.device = "cpu",
) -> EvalMetrics:
    """Score both sides of every pair with the serving code path and compute the metrics."""
    began = time.perf_counter()
    values = score(
        model,
        tokenizer,
        pairs.prompts * 2,
        pairs.chosen + pairs.rejected,
        max_length=max_length,
        device=device,
    )
    seconds = time.perf_counter() - began
    n = len(pairs)
    return compute_metrics(
        values[:n],
        values[n:],
        rules=pairs.rules,
        chosen_lengths=[len(text) for text in pairs.chosen],
        rejected_lengths=[len(text) for text in pairs.rejected],
        seconds=seconds,
    )
