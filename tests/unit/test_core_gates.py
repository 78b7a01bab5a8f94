from __future__ import annotations

import pytest

from rewardops_operator.api.models import GatesSpec
from rewardops_operator.core.gates import evaluate_gates
from rewardops_trainer.contract import Report
from tests.support.reports import make_report, metrics


def by_name(gates: GatesSpec, report: Report) -> dict[str, tuple[bool, str, str, str]]:
    return {r.name: (r.passed, r.value, r.limit, r.message) for r in evaluate_gates(gates, report)}


def test_defaults_pass_a_better_candidate_and_record_numbers() -> None:
    results = by_name(GatesSpec(), make_report(metrics(0.74), metrics(0.70)))
    assert set(results) == {
        "minHeldOutAccuracy",
        "maxHeldOutRegression",
        "maxGoldenRegression",
        "maxSliceRegression",
    }
    assert all(passed for passed, *_ in results.values())
    assert results["minHeldOutAccuracy"][1:3] == ("0.7400", "0.6")
    assert results["maxHeldOutRegression"][1] == "-0.0400"
    assert "0.7400 vs served 0.7000" in results["maxHeldOutRegression"][3]


def test_accuracy_below_minimum_fails_with_numbers() -> None:
    passed, value, limit, message = by_name(GatesSpec(), make_report(metrics(0.55)))[
        "minHeldOutAccuracy"
    ]
    assert (passed, value, limit) == (False, "0.5500", "0.6")
    assert "below the minimum 0.6" in message


@pytest.mark.parametrize(
    ("baseline", "passed"),
    [(0.70, True), (0.7001, False), (0.6999, True)],
)
def test_held_out_regression_boundary_is_inclusive(baseline: float, passed: bool) -> None:
    # 0.70 - 0.69 is 0.010000000000000009 in floats: exactly at the limit must still pass.
    gates = GatesSpec(max_held_out_regression="0.01")
    result = by_name(gates, make_report(metrics(0.69), metrics(baseline)))
    assert result["maxHeldOutRegression"][0] is passed


def test_minimum_accuracy_exactly_at_limit_passes() -> None:
    assert by_name(GatesSpec(min_held_out_accuracy="0.6"), make_report(metrics(0.6)))[
        "minHeldOutAccuracy"
    ][0]


def test_no_baseline_passes_regression_gates_with_reason() -> None:
    gates = GatesSpec(max_latency_regression_percent=10)
    results = by_name(gates, make_report(metrics(0.65)))
    for name in (
        "maxHeldOutRegression",
        "maxGoldenRegression",
        "maxSliceRegression",
        "maxLatencyRegressionPercent",
    ):
        passed, value, _, message = results[name]
        assert passed
        assert value == "n/a"
        assert message == "no model in production"


def test_golden_regression_only_when_both_have_golden_metrics() -> None:
    gates = GatesSpec(max_golden_regression="0.02")
    only_candidate = make_report(metrics(0.7), metrics(0.7), candidate_golden=metrics(0.5))
    assert by_name(gates, only_candidate)["maxGoldenRegression"][:2] == (True, "n/a")
    both = make_report(
        metrics(0.7), metrics(0.7), candidate_golden=metrics(0.80), baseline_golden=metrics(0.85)
    )
    passed, value, _, message = by_name(gates, both)["maxGoldenRegression"]
    assert (passed, value) == (False, "0.0500")
    assert "golden-set" in message


def test_slice_gate_ignores_small_slices_and_names_failing_ones() -> None:
    gates = GatesSpec(max_slice_regression="0.05", min_slice_pairs=20)
    candidate = metrics(
        0.7,
        slices={"thumb": (100, 0.60), "rating": (100, 0.80), "tiny": (5, 0.0), "new": (50, 0.5)},
    )
    baseline = metrics(0.7, slices={"thumb": (100, 0.70), "rating": (100, 0.78), "tiny": (5, 1.0)})
    passed, value, limit, message = by_name(gates, make_report(candidate, baseline))[
        "maxSliceRegression"
    ]
    assert (passed, value, limit) == (False, "0.1000", "0.05")
    assert "thumb" in message
    assert "tiny" not in message
    assert "rating" not in message


def test_slice_gate_passes_when_no_slice_is_big_enough_or_disabled() -> None:
    report = make_report(metrics(0.7, slices={"a": (3, 0.0)}), metrics(0.7, slices={"a": (3, 1.0)}))
    passed, value, _, message = by_name(GatesSpec(min_slice_pairs=20), report)["maxSliceRegression"]
    assert (passed, value) == (True, "n/a")
    assert "20 pairs" in message
    assert "maxSliceRegression" not in by_name(GatesSpec(max_slice_regression=None), report)
    ok = make_report(metrics(0.7, slices={"a": (30, 0.7)}), metrics(0.7, slices={"a": (30, 0.72)}))
    passed, value, _, message = by_name(GatesSpec(), ok)["maxSliceRegression"]
    assert (passed, value) == (True, "0.0200")
    assert "1 slice(s) checked" in message


def test_latency_gate_in_percent() -> None:
    gates = GatesSpec(max_latency_regression_percent=20)
    slower = make_report(metrics(0.7, latency=2.5), metrics(0.7, latency=2.0))
    passed, value, limit, message = by_name(gates, slower)["maxLatencyRegressionPercent"]
    assert (passed, value, limit) == (False, "25.0", "20")
    assert "+25.0%" in message
    at_limit = make_report(metrics(0.7, latency=2.4), metrics(0.7, latency=2.0))
    assert by_name(gates, at_limit)["maxLatencyRegressionPercent"][0]
    unmeasured = make_report(metrics(0.7, latency=2.4), metrics(0.7, latency=0.0))
    assert by_name(gates, unmeasured)["maxLatencyRegressionPercent"][:2] == (True, "n/a")


def test_length_correlation_gate_uses_magnitude() -> None:
    gates = GatesSpec(max_length_correlation="0.3")
    negative = make_report(metrics(0.7, length_correlation=-0.45))
    passed, value, _, _ = by_name(gates, negative)["maxLengthCorrelation"]
    assert (passed, value) == (False, "0.4500")
    assert by_name(gates, make_report(metrics(0.7, length_correlation=0.3)))[
        "maxLengthCorrelation"
    ][0]
    assert "maxLengthCorrelation" not in by_name(GatesSpec(), negative)
