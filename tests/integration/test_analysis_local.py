"""`rewardops run`'s driver measures serving-metrics checks on the local serving port.

The local Deployment is a stand-in whose serving port is a loopback server answering with the
reference server's metrics registry; everything else is the real LocalDriver and core.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import pytest

from rewardops_operator.api.models import Phase, RewardModelUpdate
from rewardops_operator.core.actions import Action, SetServedModel
from rewardops_operator.core.observations import DeploymentState
from rewardops_operator.local.driver import LocalDriver, LocalUpdate
from rewardops_operator.local.jobs import LocalJobs
from rewardops_operator.local.serving import LocalDeployment
from rewardops_trainer.contract import StorageSettings
from tests.integration.test_analysis_operator import metrics_server
from tests.unit.test_core_analysis import minutes, rollout_done
from tests.unit.test_core_naming import make_update
from tests.unit.test_core_reconcile import SERVED, SETTINGS, rolled_out


@dataclass
class ServingPort:
    """What the driver uses of a LocalDeployment: its port, its state, set_model, the lock."""

    serve_port: int
    state: DeploymentState
    lock_holder: str | None = None
    set_models: list[SetServedModel] = field(default_factory=list)

    def observe(self) -> DeploymentState:
        return self.state

    def set_model(self, action: SetServedModel) -> None:
        self.set_models.append(action)


@pytest.fixture
def drifted_port() -> Iterator[int]:
    yield from metrics_server(2.5)


@pytest.fixture
def healthy_port() -> Iterator[int]:
    yield from metrics_server(0.1)


def verifying(port: int) -> tuple[LocalUpdate, ServingPort]:
    check = {
        "name": "score-drift",
        "servingMetrics": {"metric": "ScoreMeanShift", "port": 1, "minSamples": 100},
        "max": "0.5",
    }
    spec = {"duration": "1m", "interval": "1m", "checks": [check]}
    update, _ = rollout_done(make_update({"promotion": {"analysis": spec}}))
    assert update.status is not None
    serving = ServingPort(port, rolled_out(update))
    serving.lock_holder = serving.state.lock_holder
    return LocalUpdate(update=update, status=update.status), serving


class _NoJobs:
    """The Job finished long ago (the update is Verifying): the driver finds none."""

    def observe(self, name: str | None) -> None:
        return None


def drive(item: LocalUpdate, serving: ServingPort) -> None:
    def on_change(item: LocalUpdate, status: object, actions: list[Action]) -> None:
        pass

    driver = LocalDriver(
        jobs=cast(LocalJobs, _NoJobs()),
        deployments={"reward-scorer": cast(LocalDeployment, serving)},
        settings=SETTINGS,
        storage=StorageSettings(),
        on_change=on_change,
        clock=lambda: minutes(1),
    )
    driver.step(item)


def served(update: RewardModelUpdate) -> str:
    assert update.status is not None
    assert update.status.candidate is not None
    return update.status.candidate.model_uri


def test_local_run_rolls_back_a_live_score_drift(drifted_port: int) -> None:
    item, serving = verifying(drifted_port)
    drive(item, serving)
    assert item.status.phase == Phase.ROLLED_BACK
    assert [a.model_uri for a in serving.set_models] == [SERVED]
    assert serving.lock_holder is None
    assert [(e.type, e.reason) for e in item.events] == [("Warning", "AnalysisFailed")]
    assert "live check score-drift failed" in item.events[0].message


def test_local_run_keeps_a_healthy_model(healthy_port: int) -> None:
    item, serving = verifying(healthy_port)
    drive(item, serving)
    assert item.status.phase == Phase.SUCCEEDED
    assert serving.set_models == []
    assert item.status.analysis is not None
    assert item.status.analysis.checks[0].passed == 1
    assert item.status.served_model == served(item.update)
