"""Prometheus metrics of the scoring server, on a registry of its own (one per app)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from rewardops_trainer.contract.report import SCORE_BUCKETS

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rewardops_serve_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rewardops_serve_request_duration_seconds",
            "HTTP request latency by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "rewardops_serve_batch_size",
            "(prompt, response) pairs per model forward",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.forward_seconds = Histogram(
            "rewardops_serve_forward_duration_seconds",
            "Time of one model forward (tokenize + score)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scores = Histogram(
            "rewardops_serve_score",
            "Distribution of the rewards served",
            # The report's buckets: live and offline score distributions compare bucket by bucket.
            buckets=SCORE_BUCKETS,
            registry=self.registry,
        )
        self.model = Info("rewardops_serve_model", "The model being served", registry=self.registry)
        self.ready = Gauge(
            "rewardops_serve_ready", "1 when /readyz answers 200", registry=self.registry
        )

    def observe_forward(self, scores: Sequence[float], seconds: float) -> None:
        self.batch_size.observe(len(scores))
        self.forward_seconds.observe(seconds)
        for value in scores:
            self.scores.observe(value)
