"""The real operator (kopf) runs fresh-feedback evaluation Jobs after a rollout.

The kubelet harness plays both Jobs: the training Job writes a report, the evaluation Job
writes its result with the given accuracies into the real S3 server. What is under test is the
operator's side: the evaluation Job it creates, the result it reads, the verdict it acts on.
"""

from __future__ import annotations

import pytest

from rewardops_trainer.contract import FeedbackConfig
from tests.integration.test_operator_lifecycle import (
    API,
    DEPLOYMENTS,
    JOBS,
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
from tests.support.kubelet import (
    Outcome,
    PlayedJob,
    Player,
    by_command,
    write_feedback,
    write_report,
)

pytestmark = pytest.mark.slow


def with_feedback(name: str, bucket: str) -> dict[str, object]:
    check = {"name": "user-agreement", "freshFeedback": {"minPairs": 100}, "min": "-0.02"}
    analysis = {"duration": "2s", "interval": "1s", "checks": [check]}
    return update(name, bucket, promotion={"analysis": analysis})


def recording(player: Player, seen: list[PlayedJob]) -> Player:
    def play(played: PlayedJob) -> Outcome | None:
        seen.append(played)
        return player(played)

    return play


def test_users_agreeing_less_with_the_promoted_model_roll_it_back(
    cluster: RunningCluster,  # noqa: F811
    bucket: str,
) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    evaluations: list[PlayedJob] = []
    player = by_command(
        train=write_report(candidate=0.82, baseline=0.7),
        feedback=recording(write_feedback(promoted=0.64, previous=0.71), evaluations),
    )
    with kubelet(cluster, player), operator():
        cluster.create(API, with_feedback("disliked", bucket))
        done = wait_for("RolledBack", phase(cluster, "disliked", "RolledBack"))
    rolled_back = condition(done, "RolledBack")
    assert rolled_back["reason"] == "AnalysisFailed", rolled_back["message"]
    assert "live check user-agreement failed" in rolled_back["message"]
    assert "below min -0.02" in rolled_back["message"]
    assert (
        "promoted 0.6400 vs previous 0.7100 agreement on 400 fresh pair(s)"
        in (rolled_back["message"])
    )
    assert model_env(cluster.get(f"{DEPLOYMENTS}/scorer")) == SERVED
    assert ("Warning", "AnalysisFailed") in {
        (e["type"], e["reason"]) for e in events_for(cluster, "disliked")
    }
    # One evaluation Job, running the trainer's feedback command on both models.
    [played] = evaluations
    assert played.container["command"] == ["rewardops-trainer", "feedback"]
    config: FeedbackConfig = played.feedback_config()
    assert config.previous_model_uri == SERVED
    assert config.promoted_model_uri == done["status"]["candidate"]["modelUri"]
    assert config.min_pairs == 100
    owner = played.job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("RewardModelUpdate", "disliked")
    feedback = done["status"]["analysis"]["feedback"]
    assert feedback["attempts"] == 1
    assert feedback["pairsFound"] == 400
    assert "jobName" not in feedback or feedback["jobName"] is None
    assert cluster.get(f"{JOBS}/{played.name}") is not None


def test_users_agreeing_as_much_keep_the_promoted_model(
    cluster: RunningCluster,  # noqa: F811
    bucket: str,
) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    player = by_command(
        train=write_report(candidate=0.82, baseline=0.7),
        feedback=write_feedback(promoted=0.70, previous=0.71),
    )
    with kubelet(cluster, player), operator():
        cluster.create(API, with_feedback("liked", bucket))
        done = wait_for("Succeeded", phase(cluster, "liked", "Succeeded"))
    status = done["status"]
    [check] = status["analysis"]["checks"]
    assert (check["name"], check["passed"], check["failed"]) == ("user-agreement", 1, 0)
    assert check["lastValue"] == "-0.01"
    assert model_env(cluster.get(f"{DEPLOYMENTS}/scorer")) == status["servedModel"] != SERVED
