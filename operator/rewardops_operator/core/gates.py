"""Promotion gates: what a candidate must show against the served model (docs/gates.md).

Each gate yields a :class:`GateResult` with the measured value, the limit and a sentence, so
the status explains every decision. Limits are inclusive: a value exactly at its limit passes
(compared with a small tolerance, because decimal limits such as 0.01 are not exact floats).
"""

from __future__ import annotations

from rewardops_operator.api.models import GateResult, GatesSpec
from rewardops_trainer.contract import EvalMetrics, Report

#: Slack for float round-off when comparing against a decimal limit.
TOLERANCE = 1e-9
NOT_MEASURED = "n/a"
NO_BASELINE = "no model in production"


def _at_most(value: float, limit: float) -> bool:
    return value <= limit + TOLERANCE


def _result(name: str, passed: bool, value: str, limit: str, message: str) -> GateResult:
    return GateResult(name=name, passed=passed, value=value, limit=limit, message=message)


def _min_held_out_accuracy(gates: GatesSpec, candidate: EvalMetrics) -> GateResult:
    limit = float(gates.min_held_out_accuracy)
    passed = _at_most(limit, candidate.accuracy)
    relation = "at least" if passed else "below"
    return _result(
        "minHeldOutAccuracy",
        passed,
        f"{candidate.accuracy:.4f}",
        gates.min_held_out_accuracy,
        f"held-out accuracy {candidate.accuracy:.4f} is {relation} the minimum "
        f"{gates.min_held_out_accuracy} ({candidate.pairs} pairs)",
    )


def _regression(
    name: str, what: str, limit_text: str, candidate: EvalMetrics, baseline: EvalMetrics
) -> GateResult:
    regression = baseline.accuracy - candidate.accuracy
    passed = _at_most(regression, float(limit_text))
    verdict = "within" if passed else "exceeds"
    return _result(
        name,
        passed,
        f"{regression:.4f}",
        limit_text,
        f"{what} accuracy {candidate.accuracy:.4f} vs served {baseline.accuracy:.4f}: "
        f"regression {regression:.4f} {verdict} the limit {limit_text}",
    )


def _slices(
    limit_text: str, min_pairs: int, candidate: EvalMetrics, baseline: EvalMetrics
) -> GateResult:
    eligible = sorted(
        (baseline.slices[name].accuracy - metrics.accuracy, name)
        for name, metrics in candidate.slices.items()
        if name in baseline.slices
        and metrics.pairs >= min_pairs
        and baseline.slices[name].pairs >= min_pairs
    )
    if not eligible:
        return _result(
            "maxSliceRegression",
            True,
            NOT_MEASURED,
            limit_text,
            f"no slice has at least {min_pairs} pairs for both models",
        )
    worst, worst_name = eligible[-1]
    failing = [name for regression, name in eligible if not _at_most(regression, float(limit_text))]
    if failing:
        message = (
            f"slices regressing more than {limit_text}: {', '.join(sorted(failing))} "
            f"(worst {worst_name}: {worst:.4f})"
        )
    else:
        message = (
            f"{len(eligible)} slice(s) checked; worst {worst_name} regresses {worst:.4f}, "
            f"within {limit_text}"
        )
    return _result("maxSliceRegression", not failing, f"{worst:.4f}", limit_text, message)


def _latency(limit_percent: int, candidate: EvalMetrics, baseline: EvalMetrics) -> GateResult:
    limit_text = str(limit_percent)
    if baseline.latency_ms_per_pair <= 0:
        return _result(
            "maxLatencyRegressionPercent",
            True,
            NOT_MEASURED,
            limit_text,
            "the served model's latency was not measured",
        )
    increase = (
        (candidate.latency_ms_per_pair - baseline.latency_ms_per_pair)
        / baseline.latency_ms_per_pair
        * 100
    )
    passed = _at_most(increase, limit_percent)
    verdict = "within" if passed else "exceeds"
    return _result(
        "maxLatencyRegressionPercent",
        passed,
        f"{increase:.1f}",
        limit_text,
        f"latency {candidate.latency_ms_per_pair:.3f} ms/pair vs served "
        f"{baseline.latency_ms_per_pair:.3f}: {increase:+.1f}% {verdict} the limit "
        f"{limit_percent}%",
    )


def _length_correlation(limit_text: str, candidate: EvalMetrics) -> GateResult:
    magnitude = abs(candidate.length_correlation)
    passed = _at_most(magnitude, float(limit_text))
    verdict = "within" if passed else "exceeds"
    return _result(
        "maxLengthCorrelation",
        passed,
        f"{magnitude:.4f}",
        limit_text,
        f"|corr(reward, response length)| {magnitude:.4f} {verdict} the limit {limit_text}",
    )


def _no_baseline(name: str, limit: str, message: str = NO_BASELINE) -> GateResult:
    return _result(name, True, NOT_MEASURED, limit, message)


def evaluate_gates(gates: GatesSpec, report: Report) -> list[GateResult]:
    """Every configured gate on the report's candidate vs its baseline (the served model)."""
    candidate = report.candidate
    baseline = report.baseline
    results = [_min_held_out_accuracy(gates, candidate.held_out)]
    if baseline is None:
        results.append(_no_baseline("maxHeldOutRegression", gates.max_held_out_regression))
        results.append(_no_baseline("maxGoldenRegression", gates.max_golden_regression))
    else:
        results.append(
            _regression(
                "maxHeldOutRegression",
                "held-out",
                gates.max_held_out_regression,
                candidate.held_out,
                baseline.held_out,
            )
        )
        if candidate.golden is not None and baseline.golden is not None:
            results.append(
                _regression(
                    "maxGoldenRegression",
                    "golden-set",
                    gates.max_golden_regression,
                    candidate.golden,
                    baseline.golden,
                )
            )
        else:
            results.append(
                _no_baseline(
                    "maxGoldenRegression",
                    gates.max_golden_regression,
                    "no golden set was evaluated for both models",
                )
            )
    if gates.max_slice_regression is not None:
        results.append(
            _slices(
                gates.max_slice_regression,
                gates.min_slice_pairs,
                candidate.held_out,
                baseline.held_out,
            )
            if baseline is not None
            else _no_baseline("maxSliceRegression", gates.max_slice_regression)
        )
    if gates.max_latency_regression_percent is not None:
        limit = gates.max_latency_regression_percent
        results.append(
            _latency(limit, candidate.held_out, baseline.held_out)
            if baseline is not None
            else _no_baseline("maxLatencyRegressionPercent", str(limit))
        )
    if gates.max_length_correlation is not None:
        results.append(_length_correlation(gates.max_length_correlation, candidate.held_out))
    return results
