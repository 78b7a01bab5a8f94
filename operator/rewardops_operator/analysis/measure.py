"""One round of measurements for every check of an analysis, whatever the driver."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rewardops_operator.analysis import prometheus, serving
from rewardops_operator.analysis.http import ProviderError
from rewardops_operator.analysis.serving import OfflineScores
from rewardops_operator.api.models import (
    AnalysisSpec,
    RewardModelUpdateStatus,
    ServingMetricsCheckSpec,
)
from rewardops_operator.core.observations import AnalysisMeasurements, CheckMeasurement

#: The /metrics URLs of the serving pods for a check (its port and path); raises
#: ProviderError when they cannot be listed.
TargetLister = Callable[[ServingMetricsCheckSpec], Sequence[str]]


def offline_scores(status: RewardModelUpdateStatus | None) -> OfflineScores | None:
    """The candidate's held-out score mean and spread, recorded in status at evaluation."""
    candidate = status.candidate if status is not None else None
    if candidate is None or candidate.reward_mean is None or candidate.reward_std is None:
        return None
    counts = tuple(candidate.score_counts) if candidate.score_counts is not None else None
    return OfflineScores(float(candidate.reward_mean), float(candidate.reward_std), counts)


def measure_all(
    spec: AnalysisSpec,
    offline: OfflineScores | None,
    *,
    targets: TargetLister,
    secret: prometheus.SecretReader,
) -> AnalysisMeasurements:
    results: list[CheckMeasurement] = []
    # Fresh-feedback checks are measured by evaluation Jobs (core/feedback.py), not here.
    for check in spec.checks:
        if check.prometheus is not None:
            results.append(prometheus.query(check.name, check.prometheus, secret))
        elif check.serving_metrics is not None:
            try:
                urls = targets(check.serving_metrics)
            except ProviderError as error:
                results.append(CheckMeasurement(check.name, error=str(error)))
                continue
            results.append(serving.measure(check.name, check.serving_metrics, urls, offline))
    return AnalysisMeasurements(tuple(results))
