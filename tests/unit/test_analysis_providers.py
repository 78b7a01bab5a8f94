"""The live-analysis providers against real HTTP servers on loopback.

The Prometheus provider talks to a small server that answers the Prometheus HTTP API's
instant-query JSON (the real Prometheus is in tests/integration/test_analysis_prometheus.py);
the serving-metrics provider scrapes the reference server's own metrics registry.
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from prometheus_client import generate_latest

from rewardops_operator.analysis import prometheus, serving
from rewardops_operator.analysis.http import ProviderError
from rewardops_operator.analysis.measure import measure_all, offline_scores
from rewardops_operator.analysis.serving import OfflineScores
from rewardops_operator.api.models import (
    AnalysisSpec,
    ModelMetricsStatus,
    PrometheusCheckSpec,
    RewardModelUpdateStatus,
    ServingMetricsCheckSpec,
)
from rewardops_operator.local.serving import free_port
from rewardops_trainer.contract.report import SCORE_BUCKETS
from rewardops_trainer.serve.metrics import ServeMetrics

Responder = Callable[[str, dict[str, str]], tuple[int, bytes]]


@pytest.fixture
def http_server() -> Iterator[Callable[[Responder], str]]:
    """Start loopback servers answering with a function of (path+query, headers)."""
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Responder) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = respond(self.path, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def vector(*values: str) -> bytes:
    result = [
        {"metric": {"pod": f"p{i}"}, "value": [1700000000.0, v]} for i, v in enumerate(values)
    ]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


def no_secrets(name: str, key: str) -> str:
    raise LookupError(f"Secret {name} does not exist")


# --- Prometheus ------------------------------------------------------------------------------


def test_prometheus_vector_scalar_and_the_query_sent(
    http_server: Callable[[Responder], str],
) -> None:
    seen: list[str] = []

    def respond(path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        parsed = urlparse(path)
        assert parsed.path == "/api/v1/query"
        query = parse_qs(parsed.query)["query"][0]
        seen.append(query)
        if query == "scalar(1)":
            body = {"status": "success", "data": {"resultType": "scalar", "result": [1, "0.25"]}}
            return 200, json.dumps(body).encode()
        return 200, vector("0.004", "0.02")

    address = http_server(respond)
    query = 'sum(rate(x{code=~"5.."}[1m])) / sum(rate(x[1m]))'
    spec = PrometheusCheckSpec(address=address + "/", query=query)
    measured = prometheus.query("errors", spec, no_secrets)
    assert (measured.values, measured.error, measured.detail) == ((0.004, 0.02), None, "2 series")
    scalar = prometheus.query(
        "s", PrometheusCheckSpec(address=address, query="scalar(1)"), no_secrets
    )
    assert scalar.values == (0.25,)
    assert seen == [query, "scalar(1)"]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, vector(), "no series"),
        (200, vector("NaN"), "NaN"),
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse error at char 5"}',
            "HTTP 400: parse error at char 5",
        ),
        (200, b"<html>not prometheus</html>", "not a Prometheus query answer"),
        (
            200,
            b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
            "returned a matrix",
        ),
    ],
)
def test_prometheus_answers_without_usable_numbers_are_inconclusive(
    http_server: Callable[[Responder], str], status: int, body: bytes, expected: str
) -> None:
    address = http_server(lambda path, headers: (status, body))
    measured = prometheus.query("c", PrometheusCheckSpec(address=address, query="up"), no_secrets)
    assert measured.values == ()
    assert expected in (measured.error or measured.detail)


def test_prometheus_unreachable_is_an_error() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    measured = prometheus.query("c", PrometheusCheckSpec(address=address, query="up"), no_secrets)
    assert measured.values == ()
    assert measured.error is not None
    assert address + "/api/v1/query" in measured.error


def test_prometheus_auth_comes_from_secrets_by_reference(
    http_server: Callable[[Responder], str],
) -> None:
    secrets = {("prom-token", "token"): "s3cr3t\n", ("prom-basic", "username"): "ops"}
    secrets[("prom-basic", "password")] = "pa:ss"

    def secret(name: str, key: str) -> str:
        if (name, key) not in secrets:
            raise LookupError(f"Secret {name} has no key {key}")
        return secrets[(name, key)]

    def respond(path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        allowed = {"Bearer s3cr3t", "Basic " + base64.b64encode(b"ops:pa:ss").decode()}
        if headers.get("Authorization") not in allowed:
            return 401, b'{"status":"error","error":"unauthorized"}'
        return 200, vector("1")

    address = http_server(respond)

    def check(auth: dict[str, object] | None) -> tuple[tuple[float, ...], str | None]:
        spec = PrometheusCheckSpec.model_validate({"address": address, "query": "up", "auth": auth})
        measured = prometheus.query("c", spec, secret)
        return measured.values, measured.error

    assert check({"bearerToken": {"name": "prom-token", "key": "token"}}) == ((1.0,), None)
    assert check({"basic": {"secretName": "prom-basic"}}) == ((1.0,), None)
    values, error = check(None)
    assert values == ()
    assert error is not None
    assert "HTTP 401: unauthorized" in error
    values, error = check({"bearerToken": {"name": "prom-token", "key": "nope"}})
    assert error == "credentials: Secret prom-token has no key nope"


# --- serving metrics -------------------------------------------------------------------------


def pod_metrics(
    *, ok: int = 0, errors: int = 0, latency: float = 0.02, scores: list[float] | None = None
) -> bytes:
    """A reference server's /metrics after some traffic (its real metrics registry)."""
    metrics = ServeMetrics()
    for _ in range(ok):
        metrics.requests.labels("/v1/score", "200").inc()
        metrics.latency.labels("/v1/score").observe(latency)
    for _ in range(errors):
        metrics.requests.labels("/v1/scores", "500").inc()
        metrics.latency.labels("/v1/scores").observe(latency)
    # Probes are not traffic: they never count.
    for _ in range(50):
        metrics.requests.labels("/readyz", "503").inc()
        metrics.latency.labels("/readyz").observe(9.0)
    if scores:
        metrics.observe_forward(scores, 0.01)
    return generate_latest(metrics.registry)


def serve_pods(start: Callable[[Responder], str], *bodies: bytes) -> list[str]:
    def answering(body: bytes) -> Responder:
        return lambda path, headers: (200, body)

    return [start(answering(body)) + "/metrics" for body in bodies]


def check(metric: str, **fields: object) -> ServingMetricsCheckSpec:
    return ServingMetricsCheckSpec.model_validate({"metric": metric, "minSamples": 50, **fields})


def test_error_ratio_sums_pods_and_ignores_probes(http_server: Callable[[Responder], str]) -> None:
    urls = serve_pods(http_server, pod_metrics(ok=90, errors=10), pod_metrics(ok=100))
    measured = serving.measure("errors", check("ErrorRatio"), urls, None)
    assert measured.values == pytest.approx((10 / 200,))
    assert "10 of 200" in measured.detail
    assert "2 pod(s)" in measured.detail


def test_latency_quantile_from_histogram_buckets(http_server: Callable[[Responder], str]) -> None:
    fast = serving.measure(
        "p99", check("LatencyQuantile"), serve_pods(http_server, pod_metrics(ok=100)), None
    )
    slow = serving.measure(
        "p99",
        check("LatencyQuantile", quantile="0.5"),
        serve_pods(http_server, pod_metrics(ok=100, latency=0.7)),
        None,
    )
    # 0.02 s lies in the (0.01, 0.025] bucket, 0.7 s in (0.5, 1.0].
    assert 0.01 < fast.values[0] <= 0.025
    assert 0.5 < slow.values[0] <= 1.0
    assert "p50 latency" in slow.detail


def test_too_little_traffic_is_inconclusive(http_server: Callable[[Responder], str]) -> None:
    urls = serve_pods(http_server, pod_metrics(ok=3))
    for metric in ("ErrorRatio", "LatencyQuantile", "ScoreDistance"):
        measured = serving.measure("c", check(metric), urls, OfflineScores(0.0, 1.0))
        assert measured.values == ()
        assert measured.error is None
        assert "(minSamples 50)" in measured.detail


def test_score_drift_measures_shift_and_distance(http_server: Callable[[Responder], str]) -> None:
    rng = random.Random(7)
    same = [rng.gauss(0.5, 1.0) for _ in range(2000)]
    shifted = [rng.gauss(3.0, 1.0) for _ in range(2000)]
    offline = OfflineScores(mean=0.5, std=1.0)
    results = {}
    for label, scores in (("same", same), ("shifted", shifted)):
        urls = serve_pods(http_server, pod_metrics(scores=scores))
        results[label] = {
            metric: serving.measure("c", check(metric), urls, offline).values[0]
            for metric in ("ScoreMeanShift", "ScoreStdShift", "ScoreDistance")
        }
    assert results["same"]["ScoreMeanShift"] < 0.2
    assert results["same"]["ScoreDistance"] < 0.1
    assert results["shifted"]["ScoreMeanShift"] > 2.0
    assert results["shifted"]["ScoreDistance"] > 0.7
    assert results["same"]["ScoreStdShift"] < 0.3


def offline_histogram(scores: list[float]) -> tuple[int, ...]:
    counts = [0] * (len(SCORE_BUCKETS) + 1)
    for score in scores:
        counts[bisect.bisect_left(SCORE_BUCKETS, score)] += 1
    return tuple(counts)


def test_score_distance_compares_with_the_offline_histogram_when_the_report_has_one(
    http_server: Callable[[Responder], str],
) -> None:
    rng = random.Random(11)
    # Two narrow modes: a normal law with the same mean and spread looks nothing like it.
    live = [rng.choice((-2.0, 2.0)) + rng.gauss(0.0, 0.1) for _ in range(2000)]
    urls = serve_pods(http_server, pod_metrics(scores=live))
    distance = check("ScoreDistance")
    same = OfflineScores(0.0, 2.0, offline_histogram(live))
    measured = serving.measure("c", distance, urls, same)
    assert measured.values == (0.0,)
    assert "offline histogram" in measured.detail
    moved = OfflineScores(0.0, 2.0, offline_histogram([score + 3.0 for score in live]))
    assert serving.measure("c", distance, urls, moved).values[0] > 0.4
    # Without counts (an older report) the normal law stands in, and is far off here.
    fallback = serving.measure("c", distance, urls, OfflineScores(0.0, 2.0))
    assert fallback.values[0] > 0.1
    assert "N(mean, std)" in fallback.detail


def test_score_checks_need_the_offline_spread(http_server: Callable[[Responder], str]) -> None:
    urls = serve_pods(http_server, pod_metrics(scores=[0.1] * 100))
    for offline in (None, OfflineScores(0.0, 0.0)):
        measured = serving.measure("c", check("ScoreDistance"), urls, offline)
        assert measured.values == ()
        assert "offline score spread" in measured.detail


def test_a_pod_that_does_not_answer_makes_the_scrape_an_error(
    http_server: Callable[[Responder], str],
) -> None:
    urls = serve_pods(http_server, pod_metrics(ok=100))
    urls.append(f"http://127.0.0.1:{free_port()}/metrics")
    measured = serving.measure("c", check("ErrorRatio"), urls, None)
    assert measured.values == ()
    assert measured.error is not None
    assert urls[-1] in measured.error
    empty = serving.measure("c", check("ErrorRatio"), [], None)
    assert empty.error == "no ready serving pod to scrape"
    garbage = serve_pods(http_server, b"this is { not metrics")
    assert serving.measure("c", check("ErrorRatio"), garbage, None).error is not None


def test_measure_all_runs_each_provider_and_reads_offline_scores_from_status(
    http_server: Callable[[Responder], str],
) -> None:
    prom = http_server(lambda path, headers: (200, vector("0.001")))
    pods = serve_pods(http_server, pod_metrics(ok=100, scores=[0.5] * 200))
    spec = AnalysisSpec.model_validate(
        {
            "checks": [
                {"name": "prom", "prometheus": {"address": prom, "query": "up"}, "max": "0.01"},
                {"name": "drift", "servingMetrics": {"metric": "ScoreMeanShift"}, "max": "1"},
                {"name": "unlisted", "servingMetrics": {"metric": "ErrorRatio"}, "max": "1"},
                {"name": "agreement", "freshFeedback": {}, "min": "-0.02"},
            ]
        }
    )
    status = RewardModelUpdateStatus(
        candidate=ModelMetricsStatus(
            model_uri="s3://m", held_out_accuracy="0.7", reward_mean="-0.5", reward_std="2.0"
        )
    )
    offline = offline_scores(status)
    assert offline == OfflineScores(-0.5, 2.0)
    counts = [1] * (len(SCORE_BUCKETS) + 1)
    assert status.candidate is not None
    with_counts = status.model_copy(
        update={"candidate": status.candidate.model_copy(update={"score_counts": counts})}
    )
    assert offline_scores(with_counts) == OfflineScores(-0.5, 2.0, tuple(counts))

    def targets(check: ServingMetricsCheckSpec) -> list[str]:
        if check.metric == "ErrorRatio":
            raise ProviderError("listing the serving pods: HTTP 403")
        return pods

    measured = measure_all(spec, offline, targets=targets, secret=no_secrets)
    by_name = {m.name: m for m in measured.checks}
    assert by_name["prom"].values == (0.001,)
    # The histogram puts 0.5 in the (0, 0.5] bucket: midpoint 0.25, shift (0.25 + 0.5) / 2.
    assert by_name["drift"].values == pytest.approx((0.375,))
    assert by_name["unlisted"].error == "listing the serving pods: HTTP 403"
    # Evaluation Jobs measure fresh feedback; a round leaves it out.
    assert "agreement" not in by_name
    assert offline_scores(RewardModelUpdateStatus()) is None
    assert not math.isnan(by_name["drift"].values[0])
