"""Prometheus metrics of the operator: outcomes, stage durations, rollbacks, active runs.

The kopf driver reports every phase change it writes; durations are measured by this operator
process (a stage begun before a restart is timed from the restart).
"""

from __future__ import annotations

import threading
import time

from prometheus_client import Counter, Gauge, Histogram

from rewardops_operator.api.models import Phase

UPDATES = Counter(
    "rewardops_updates_total",
    "RewardModelUpdate runs that finished, by outcome (the terminal phase).",
    ["outcome"],
)
STAGE_SECONDS = Histogram(
    "rewardops_stage_duration_seconds",
    "Time a run spent in one phase.",
    ["stage"],
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400),
)
ROLLBACKS = Counter("rewardops_rollbacks_total", "Promotions rolled back.")
ACTIVE_RUNS = Gauge("rewardops_active_runs", "Runs in a non-terminal phase.")


class PhaseTracker:
    """Turns the phases the driver writes into metric samples; one per operator."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[str, float]] = {}
        self._guard = threading.Lock()

    def observe(self, key: str, old: str | None, new: str | None) -> None:
        """Called with each status written for ``key`` (namespace/name)."""
        now = time.monotonic()
        with self._guard:
            previous = self._since.get(key)
            if previous is not None and previous[0] != new:
                STAGE_SECONDS.labels(stage=previous[0]).observe(now - previous[1])
            if new is None:
                self._since.pop(key, None)
            elif previous is None or previous[0] != new:
                self._since[key] = (new, now)
            if new != old and new is not None and Phase(new).terminal:
                UPDATES.labels(outcome=new).inc()
                if new == Phase.ROLLED_BACK:
                    ROLLBACKS.inc()
            self._refresh_active()

    def forget(self, key: str) -> None:
        with self._guard:
            self._since.pop(key, None)
            self._refresh_active()

    def _refresh_active(self) -> None:
        ACTIVE_RUNS.set(sum(1 for phase, _ in self._since.values() if not Phase(phase).terminal))
