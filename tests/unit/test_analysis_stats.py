"""Histogram arithmetic of the serving-metrics provider, against exact numbers."""

from __future__ import annotations

import math
import random

import pytest

from rewardops_operator.analysis import stats

INF = math.inf


def test_quantile_interpolates_inside_its_bucket_like_promql() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (INF, 100.0)]
    assert stats.quantile(0.5, buckets) == pytest.approx(0.1)
    assert stats.quantile(0.25, buckets) == pytest.approx(0.05)
    # rank 70 lies 20/40 into (0.1, 0.5]
    assert stats.quantile(0.7, buckets) == pytest.approx(0.3)
    assert stats.quantile(0.99, buckets) == pytest.approx(0.95)


def test_quantile_in_the_open_bucket_is_the_highest_bound_and_empty_is_nan() -> None:
    buckets = [(0.1, 10.0), (1.0, 20.0), (INF, 100.0)]
    assert stats.quantile(0.99, buckets) == 1.0
    assert math.isnan(stats.quantile(0.5, [(0.1, 0.0), (INF, 0.0)]))


def test_moments_from_bucket_midpoints() -> None:
    # 10 scores in (-1, 0] and 10 in (0, 1]: midpoints -0.5 and 0.5.
    buckets = [(-1.0, 0.0), (0.0, 10.0), (1.0, 20.0), (INF, 20.0)]
    mean, std = stats.moments(buckets)
    assert mean == pytest.approx(0.0)
    assert std == pytest.approx(0.5)
    # The open buckets stand at their finite edge.
    mean, _ = stats.moments([(-1.0, 5.0), (1.0, 5.0), (INF, 10.0)])
    assert mean == pytest.approx(0.0)


def test_ks_distance_is_small_for_the_same_law_and_large_for_a_shift() -> None:
    bounds = [-20.0, -10.0, -5.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0]
    rng = random.Random(3)

    def histogram(mean: float) -> list[tuple[float, float]]:
        scores = [rng.gauss(mean, 1.0) for _ in range(5000)]
        cumulative = [(b, float(sum(s <= b for s in scores))) for b in bounds]
        return [*cumulative, (INF, float(len(scores)))]

    assert stats.ks_distance_to_normal(histogram(0.0), 0.0, 1.0) < 0.03
    shifted = stats.ks_distance_to_normal(histogram(1.0), 0.0, 1.0)
    # The true KS distance of N(1,1) vs N(0,1) is 2*Phi(0.5)-1 = 0.383; bounds see most of it.
    assert 0.3 < shifted < 0.4
    assert math.isnan(stats.ks_distance_to_normal([(0.0, 0.0), (INF, 0.0)], 0.0, 1.0))


def test_ks_distance_between_histograms_with_the_same_bounds() -> None:
    bounds = [-1.0, 0.0, 1.0]
    # Offline: 10 per bucket of (-inf,-1], (-1,0], (0,1], (1,inf) -> CDF .25 .5 .75 at bounds.
    offline = [10, 10, 10, 10]
    same = [(-1.0, 5.0), (0.0, 10.0), (1.0, 15.0), (INF, 20.0)]
    assert stats.ks_distance_between(same, bounds, offline) == 0.0
    # Live CDF .0 .1 .6 at the bounds: the largest gap is at 0.0, |0.1 - 0.5| = 0.4.
    live = [(-1.0, 0.0), (0.0, 2.0), (1.0, 12.0), (INF, 20.0)]
    assert stats.ks_distance_between(live, bounds, offline) == pytest.approx(0.4)
    # Other bounds, or nothing to compare: no number.
    assert math.isnan(stats.ks_distance_between(live, [-1.0, 0.0, 2.0], offline))
    assert math.isnan(stats.ks_distance_between(live, bounds, [0, 0, 0, 0]))
    assert math.isnan(stats.ks_distance_between([(-1.0, 0.0), (INF, 0.0)], [-1.0], [1, 1]))
