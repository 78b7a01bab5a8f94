"""Serving-metrics provider: the reference server's own /metrics, summed over its pods.

For users without Prometheus. Counters and histograms are cumulative since each pod started;
after a completed rollout every pod is new, so the numbers describe the promoted model alone.
Metric names are the reference server's (``rewardops_trainer.serve.metrics``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from rewardops_operator.analysis import stats
from rewardops_operator.analysis.http import ProviderError, get
from rewardops_operator.api.models import ServingMetric, ServingMetricsCheckSpec
from rewardops_operator.core.observations import CheckMeasurement
from rewardops_trainer.contract.report import SCORE_BUCKETS

REQUESTS = "rewardops_serve_requests_total"
LATENCY_BUCKET = "rewardops_serve_request_duration_seconds_bucket"
SCORE_BUCKET = "rewardops_serve_score_bucket"


@dataclass(frozen=True)
class OfflineScores:
    """The candidate's score distribution on held-out pairs, from its report: mean and spread,
    and (reports since the histogram was added) the counts per bucket of ``SCORE_BUCKETS``."""

    mean: float
    std: float
    counts: tuple[int, ...] | None = None


@dataclass
class Scrape:
    """The samples the checks use, summed over every pod scraped."""

    #: (endpoint, status code) -> requests
    requests: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    #: endpoint -> upper bound -> cumulative count
    latency: dict[str, dict[float, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    #: upper bound -> cumulative count
    scores: dict[float, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == REQUESTS:
                    self.requests[(labels["endpoint"], labels["status"])] += sample.value
                elif sample.name == LATENCY_BUCKET:
                    self.latency[labels["endpoint"]][float(labels["le"])] += sample.value
                elif sample.name == SCORE_BUCKET:
                    self.scores[float(labels["le"])] += sample.value


def scrape(urls: Sequence[str]) -> Scrape:
    """Every pod must answer: a partial sum would hide the pod that misbehaves."""
    if not urls:
        raise ProviderError("no ready serving pod to scrape")
    result = Scrape()
    for url in urls:
        body = get(url)
        try:
            result.add(body.decode())
        except (ValueError, KeyError, UnicodeDecodeError) as error:
            raise ProviderError(f"{url}: not Prometheus text format: {error}") from None
    return result


def _matches(pattern: str, endpoint: str) -> bool:
    if pattern.endswith("*"):
        return endpoint.startswith(pattern[:-1])
    return endpoint == pattern


def _sorted(buckets: dict[float, float]) -> list[tuple[float, float]]:
    return sorted(buckets.items())


def measure(
    name: str,
    spec: ServingMetricsCheckSpec,
    urls: Sequence[str],
    offline: OfflineScores | None,
) -> CheckMeasurement:
    try:
        scraped = scrape(urls)
    except ProviderError as error:
        return CheckMeasurement(name, error=str(error))
    pods = f"{len(urls)} pod(s)"
    metric = ServingMetric(spec.metric)
    if metric == ServingMetric.ERROR_RATIO:
        counts = [
            (int(status) >= 500, value)
            for (endpoint, status), value in scraped.requests.items()
            if _matches(spec.endpoint, endpoint) and status.isdigit()
        ]
        total = sum(value for _, value in counts)
        errors = sum(value for failed, value in counts if failed)
        if total < spec.min_samples:
            return _too_few(name, total, "requests", spec)
        return CheckMeasurement(
            name,
            (errors / total,),
            detail=f"{errors:.0f} of {total:.0f} {spec.endpoint} requests answered 5xx, {pods}",
        )
    if metric == ServingMetric.LATENCY_QUANTILE:
        merged: dict[float, float] = defaultdict(float)
        for endpoint, buckets in scraped.latency.items():
            if _matches(spec.endpoint, endpoint):
                for bound, count in buckets.items():
                    merged[bound] += count
        latency = _sorted(merged)
        total = latency[-1][1] if latency else 0.0
        if total < spec.min_samples:
            return _too_few(name, total, "requests", spec)
        value = stats.quantile(float(spec.quantile), latency)
        return CheckMeasurement(
            name,
            (value,),
            detail=f"p{float(spec.quantile) * 100:g} latency in seconds over {total:.0f} "
            f"{spec.endpoint} requests, {pods}",
        )
    return _score_check(name, spec, _sorted(scraped.scores), offline, pods)


def _score_check(
    name: str,
    spec: ServingMetricsCheckSpec,
    scores: list[tuple[float, float]],
    offline: OfflineScores | None,
    pods: str,
) -> CheckMeasurement:
    metric = ServingMetric(spec.metric)
    total = scores[-1][1] if scores else 0.0
    if total < spec.min_samples:
        return _too_few(name, total, "scores", spec)
    if offline is None or not math.isfinite(offline.std) or offline.std <= 0:
        return CheckMeasurement(
            name, detail="the candidate's report has no offline score spread to compare with"
        )
    mean, std = stats.moments(scores)
    base = f"live mean {mean:.3f} std {std:.3f} vs offline mean {offline.mean:.3f} "
    base += f"std {offline.std:.3f}, {total:.0f} scores, {pods}"
    if metric == ServingMetric.SCORE_MEAN_SHIFT:
        return CheckMeasurement(name, (abs(mean - offline.mean) / offline.std,), detail=base)
    if metric == ServingMetric.SCORE_STD_SHIFT:
        return CheckMeasurement(name, (abs(std / offline.std - 1.0),), detail=base)
    if offline.counts is not None:
        distance = stats.ks_distance_between(scores, SCORE_BUCKETS, offline.counts)
        if not math.isnan(distance):
            return CheckMeasurement(
                name, (distance,), detail=f"KS distance to the offline histogram; {base}"
            )
    # Older reports (or a server with other buckets): compare with a normal law instead.
    distance = stats.ks_distance_to_normal(scores, offline.mean, offline.std)
    return CheckMeasurement(name, (distance,), detail=f"KS distance to N(mean, std); {base}")


def _too_few(name: str, seen: float, what: str, spec: ServingMetricsCheckSpec) -> CheckMeasurement:
    return CheckMeasurement(
        name, detail=f"only {seen:.0f} {what} so far (minSamples {spec.min_samples})"
    )
