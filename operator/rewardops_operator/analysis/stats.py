"""Numbers from Prometheus histograms: quantiles, moments, and KS distances (to a normal law, or
to an offline histogram with the same bounds).

A histogram is a list of ``(upper bound, cumulative count)`` sorted by bound, the last bound
``+Inf``, as the ``_bucket`` series of the text exposition format carry it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Buckets = Sequence[tuple[float, float]]


def quantile(q: float, buckets: Buckets) -> float:
    """The q-quantile, interpolated linearly inside its bucket (as PromQL's histogram_quantile).

    A quantile that falls in the ``+Inf`` bucket is the highest finite bound: the histogram
    cannot say more, and that bound is what a latency limit should be set against.
    """
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            # The first bucket's lower edge is 0 for latencies (bounds are positive).
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def moments(buckets: Buckets) -> tuple[float, float]:
    """(mean, standard deviation) estimated from bucket midpoints.

    The open-ended buckets stand at their finite edge; fine for drift, not for exact values.
    """
    finite = [bound for bound, _ in buckets if not math.isinf(bound)]
    if not finite:
        return math.nan, math.nan
    points: list[tuple[float, float]] = []
    previous_bound, previous_count = -math.inf, 0.0
    for bound, count in buckets:
        weight = count - previous_count
        if math.isinf(previous_bound):
            point = finite[0]
        elif math.isinf(bound):
            point = finite[-1]
        else:
            point = (previous_bound + bound) / 2
        if weight > 0:
            points.append((point, weight))
        previous_bound, previous_count = bound, count
    total = sum(weight for _, weight in points)
    if total <= 0:
        return math.nan, math.nan
    mean = sum(point * weight for point, weight in points) / total
    variance = sum(weight * (point - mean) ** 2 for point, weight in points) / total
    return mean, math.sqrt(variance)


def normal_cdf(x: float, mean: float, std: float) -> float:
    return 0.5 * (1.0 + math.erf((x - mean) / (std * math.sqrt(2.0))))


def ks_distance_to_normal(buckets: Buckets, mean: float, std: float) -> float:
    """Largest gap between the live CDF and N(mean, std) at the bucket bounds.

    The live CDF is known exactly only at the bounds, so this is the Kolmogorov-Smirnov
    statistic restricted to them: a lower bound of the true distance, and the same number
    each scrape gives for the same scores.
    """
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    return max(
        (abs(count / total - normal_cdf(bound, mean, std)) for bound, count in buckets[:-1]),
        default=0.0,
    )


def ks_distance_between(live: Buckets, bounds: Sequence[float], counts: Sequence[int]) -> float:
    """Largest gap between the live CDF and an offline histogram's CDF at their shared bounds.

    ``counts`` are per bucket (not cumulative) for ``bounds`` plus one above the last bound.
    Both CDFs are exact at the bounds, so this is the KS statistic of the two samples
    restricted to them. NaN when either side is empty or the live bounds differ.
    """
    live_bounds = [bound for bound, _ in live[:-1]]
    offline_total = sum(counts)
    total = live[-1][1] if live else 0.0
    if list(bounds) != live_bounds or total <= 0 or offline_total <= 0:
        return math.nan
    gap, below = 0.0, 0
    for (_, count), offline in zip(live[:-1], counts, strict=False):
        below += offline
        gap = max(gap, abs(count / total - below / offline_total))
    return gap
