"""The real operator (kopf) runs a live analysis on the serving pods' own /metrics.

The stand-in API server holds a serving pod (Running, Ready, podIP 127.0.0.1) whose metrics
port is a loopback HTTP server answering with the reference server's metrics registry; the
candidate's offline scores (from the report the harness writes) have mean 0 and std 1.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import generate_latest

from rewardops_trainer.serve.metrics import ServeMetrics
from tests.integration.test_operator_lifecycle import (
    API,
    DEPLOYMENTS,
    NS,
    SERVED,
    cluster,  # noqa: F401 (a fixture)
    condition,
    deployment,
    events_for,
    kubelet,
    model_env,
    operator,
    phase,
    update,
    wait_for,
)
from tests.support.kube_emulator import RunningCluster
from tests.support.kubelet import write_report

pytestmark = pytest.mark.slow


def metrics_server(score_mean: float) -> Iterator[int]:
    """A pod's /metrics after 500 scored requests whose scores centre on ``score_mean``."""
    metrics = ServeMetrics()
    rng = random.Random(1)
    for _ in range(500):
        metrics.requests.labels("/v1/score", "200").inc()
        metrics.latency.labels("/v1/score").observe(0.02)
    metrics.observe_forward([rng.gauss(score_mean, 1.0) for _ in range(500)], 0.01)
    body = generate_latest(metrics.registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/metrics" else 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def healthy_pod() -> Iterator[int]:
    yield from metrics_server(0.1)


@pytest.fixture
def drifted_pod() -> Iterator[int]:
    yield from metrics_server(2.5)


def add_serving_pod(api: RunningCluster) -> None:
    pods = f"/api/v1/namespaces/{NS}/pods"
    api.create(
        pods,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "scorer-abc12", "namespace": NS, "labels": {"app": "scorer"}},
            "spec": {"containers": [{"name": "scorer", "image": "trainer:test"}]},
        },
    )
    # What kubelet would report: running, ready, reachable on loopback.
    ready = {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    api.patch(f"{pods}/scorer-abc12/status", {"status": ready})


def with_analysis(name: str, bucket: str, port: int) -> dict[str, object]:
    check = {
        "name": "score-drift",
        "servingMetrics": {"metric": "ScoreMeanShift", "port": port, "minSamples": 100},
        "max": "0.5",
    }
    analysis = {"duration": "2s", "interval": "1s", "checks": [check]}
    return update(name, bucket, promotion={"analysis": analysis})


def test_live_score_drift_rolls_back_through_the_operator(
    cluster: RunningCluster,  # noqa: F811
    bucket: str,
    drifted_pod: int,
) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    add_serving_pod(cluster)
    with kubelet(cluster, write_report(candidate=0.82, baseline=0.7)), operator():
        cluster.create(API, with_analysis("drifty", bucket, drifted_pod))
        done = wait_for("RolledBack", phase(cluster, "drifty", "RolledBack"))
    rolled_back = condition(done, "RolledBack")
    assert rolled_back["reason"] == "AnalysisFailed", rolled_back["message"]
    assert "live check score-drift failed" in rolled_back["message"]
    assert "above max 0.5" in rolled_back["message"]
    assert "restored " + SERVED in rolled_back["message"]
    assert condition(done, "AnalysisPassed")["status"] == "False"
    assert done["status"]["analysis"]["phase"] == "Failed"
    assert done["status"]["servedModel"] == SERVED
    assert model_env(cluster.get(f"{DEPLOYMENTS}/scorer")) == SERVED
    warnings = {(e["type"], e["reason"]) for e in events_for(cluster, "drifty")}
    assert ("Warning", "AnalysisFailed") in warnings
    annotations = cluster.get(f"{DEPLOYMENTS}/scorer")["metadata"].get("annotations", {})
    assert "rewardops.dev/promotion-lock" not in annotations


def test_healthy_live_scores_keep_the_model(
    cluster: RunningCluster,  # noqa: F811
    bucket: str,
    healthy_pod: int,
) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    add_serving_pod(cluster)
    with kubelet(cluster, write_report(candidate=0.82, baseline=0.7)), operator():
        cluster.create(API, with_analysis("steady", bucket, healthy_pod))
        done = wait_for("Succeeded", phase(cluster, "steady", "Succeeded"))
    status = done["status"]
    assert status["analysis"]["phase"] == "Passed"
    [check] = status["analysis"]["checks"]
    assert check["name"] == "score-drift"
    assert check["passed"] >= 1
    assert check["failed"] == 0
    assert float(check["lastValue"]) < 0.5
    assert condition(done, "AnalysisPassed")["reason"] == "AnalysisPassed"
    assert model_env(cluster.get(f"{DEPLOYMENTS}/scorer")) == status["servedModel"] != SERVED
