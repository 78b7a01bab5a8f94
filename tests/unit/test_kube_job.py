from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest

from rewardops_operator.api.models import (
    FreshFeedbackCheckSpec,
    ModelMetricsStatus,
    RewardModelUpdateStatus,
)
from rewardops_operator.core.actions import CreateFeedbackJob, CreateJob
from rewardops_operator.core.observations import DeploymentState, Observations
from rewardops_operator.core.run_config import build_feedback_config, build_run_config
from rewardops_operator.kube.job import build_job, pod_termination
from rewardops_operator.kube.labels import label_value, run_labels
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.contract import (
    FEEDBACK_CONFIG_ENV,
    RUN_CONFIG_ENV,
    FeedbackConfig,
    RunConfig,
)
from tests.unit.test_core_naming import make_update

K8S_VERSION = "1.33.0"
NOW = datetime(2026, 11, 20, tzinfo=UTC)
SETTINGS = OperatorSettings(
    trainer_image="registry.local/trainer:1", storage_secret="default-s3", job_ttl_seconds=3600
)
FULL = {
    "serving": {"deployment": "reward-scorer", "container": "scorer"},
    "storage": {
        "endpoint": "minio.minio.svc:9000",
        "secure": False,
        "region": "us-east-1",
        "credentials": {
            "secretName": "rewardops-s3",
            "accessKeyIdKey": "access",
            "secretAccessKeyKey": "secret",
        },
    },
    "training": {
        "image": "ghcr.io/rewardops/trainer:0.1.0",
        "gpus": 2,
        "resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"memory": "64Gi"}},
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "spot", "operator": "Equal", "value": "yes", "tolerationSeconds": 60},
        ],
        "priorityClassName": "batch-low",
        "queueName": "gpu-training",
        "serviceAccountName": "reward-trainer",
        "activeDeadlineSeconds": 14400,
        "backoffLimit": 3,
    },
}


def job_for(spec: dict[str, Any] | None = None, **kw: Any) -> tuple[dict[str, Any], RunConfig]:
    update = make_update(spec, **kw)
    served = DeploymentState(
        name="reward-scorer",
        generation=1,
        observed_generation=1,
        desired_replicas=1,
        updated_replicas=1,
        available_replicas=1,
        progress_deadline_exceeded=False,
        containers=("scorer",),
        model_uri="s3://models/old/model",
    )
    config = build_run_config(update, Observations(now=NOW, deployment=served), SETTINGS)
    return build_job(update, CreateJob(config.run_id, config), SETTINGS), config


def container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


@pytest.mark.parametrize("spec", [None, FULL], ids=["minimal", "full"])
def test_job_is_valid_against_the_kubernetes_schema(spec: dict[str, Any] | None) -> None:
    job, _ = job_for(spec)
    # strict: unknown fields and wrong types (a GPU count as int) are errors.
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_identity_labels_and_owner() -> None:
    job, config = job_for()
    meta = job["metadata"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert meta["name"] == config.run_id
    assert meta["namespace"] == "ml"
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "rewardops",
        "app.kubernetes.io/component": "trainer",
        "rewardops.dev/update": "weekly-refresh",
        "rewardops.dev/run": config.run_id,
    }
    assert job["spec"]["template"]["metadata"]["labels"] == meta["labels"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "rewardops.dev/v1alpha1",
            "kind": "RewardModelUpdate",
            "name": "weekly-refresh",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_owner_reference_needs_a_uid() -> None:
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        job_for(uid=None)


def test_single_gpu_defaults() -> None:
    job, config = job_for()
    spec = job["spec"]
    pod = spec["template"]["spec"]
    main = container(job)
    assert main["image"] == "registry.local/trainer:1"
    assert main["command"] == ["rewardops-trainer", "train"]
    assert main["resources"] == {
        "requests": {"nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (2, 21600)
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert "suspend" not in spec
    assert pod["restartPolicy"] == "Never"
    for absent in ("serviceAccountName", "priorityClassName", "nodeSelector", "tolerations"):
        assert absent not in pod
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "scratch"]
    values = env(job)
    assert RunConfig.model_validate_json(values["REWARDOPS_RUN_CONFIG"]) == config
    # Credentials from the operator's default Secret, by reference.
    assert values["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "default-s3", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert values["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "default-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert "S3_ENDPOINT" not in values
    assert (values["HOME"], values["TMPDIR"], values["HF_HUB_OFFLINE"]) == (
        "/scratch",
        "/scratch",
        "1",
    )


def test_full_spec_reaches_the_job() -> None:
    job, _ = job_for(FULL)
    spec = job["spec"]
    pod = spec["template"]["spec"]
    main = container(job)
    assert main["image"] == "ghcr.io/rewardops/trainer:0.1.0"
    assert main["command"] == ["rewardops-trainer", "launch", "--nproc-per-node=2", "train"]
    assert main["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "64Gi", "nvidia.com/gpu": "2"},
    }
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "yes", "tolerationSeconds": 60},
    ]
    assert (pod["priorityClassName"], pod["serviceAccountName"]) == ("batch-low", "reward-trainer")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-training"
    assert "kueue.x-k8s.io/queue-name" not in spec["template"]["metadata"]["labels"]
    assert spec["suspend"] is True
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (3, 14400)
    shm = {"name": "dshm", "emptyDir": {"medium": "Memory"}}
    assert shm in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in main["volumeMounts"]
    values = env(job)
    assert values["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "rewardops-s3", "key": "access"}
    }
    assert values["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "rewardops-s3", "key": "secret"}
    }
    assert (values["S3_ENDPOINT"], values["S3_SECURE"], values["AWS_REGION"]) == (
        "minio.minio.svc:9000",
        "false",
        "us-east-1",
    )


def test_cpu_job_and_no_credentials() -> None:
    update = make_update({"training": {"gpus": 0}})
    config_job, _ = job_for({"training": {"gpus": 0}})
    assert "resources" not in container(config_job)
    no_secret = OperatorSettings()
    served = Observations(now=NOW)
    config = build_run_config(
        make_update({"training": {"gpus": 0, "baseModelUri": "s3://base/v1"}}), served, no_secret
    )
    job = build_job(update, CreateJob(config.run_id, config), no_secret)
    assert not any(name.startswith("AWS_") for name in env(job))


def test_restricted_pod_security_and_failure_policy() -> None:
    job, _ = job_for(FULL)
    pod = job["spec"]["template"]["spec"]
    main = container(job)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert {"/tmp", "/scratch"} <= mounts
    assert job["spec"]["podFailurePolicy"] == {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2, 3]},
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def test_no_secret_value_can_reach_the_manifest() -> None:
    job, _ = job_for(FULL)
    text = json.dumps(job)
    assert "secretKeyRef" in text
    for entry in container(job)["env"]:
        if entry["name"].startswith("AWS_") and entry["name"] != "AWS_REGION":
            assert "value" not in entry


def test_long_update_names_fit_labels() -> None:
    name = "a" * 200
    update = make_update(name=name)
    labels = run_labels(update, "run")
    assert all(len(v) <= 63 for v in labels.values())
    assert label_value(name) != label_value("a" * 199)
    assert label_value("short") == "short"
    job, _ = job_for(name=name)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_pod_termination_reads_the_trainer_container() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {"name": "istio-proxy", "state": {"terminated": {"exitCode": 0}}},
                {
                    "name": "trainer",
                    "state": {"terminated": {"exitCode": 3, "message": "error: too few pairs\n"}},
                },
            ]
        }
    }
    assert pod_termination(pod) == ("error: too few pairs", 3)
    restarted = {
        "status": {
            "containerStatuses": [
                {"name": "trainer", "state": {}, "lastState": {"terminated": {"exitCode": 4}}}
            ]
        }
    }
    assert pod_termination(restarted) == ("", 4)
    assert pod_termination({"status": {"containerStatuses": [{"name": "trainer"}]}}) == ("", None)
    assert pod_termination({}) == ("", None)


def feedback_job_for(spec: dict[str, Any]) -> tuple[dict[str, Any], FeedbackConfig]:
    """The evaluation Job of a promoted update (candidate and previous model in status)."""
    update = make_update(spec)
    status = RewardModelUpdateStatus(
        run_id="reward-model-g1-0123456789",
        candidate=ModelMetricsStatus(
            model_uri="s3://models/runs/new/model", held_out_accuracy="0.8"
        ),
        previous_model="s3://models/old/model",
    )
    update = update.model_copy(update={"status": status})
    config = build_feedback_config(
        update,
        FreshFeedbackCheckSpec(),
        evaluation_id="reward-model-g1-0123456789-fb1",
        since=NOW,
        until=NOW + timedelta(minutes=5),
        result_uri="s3://models/runs/x/feedback/reward-model-g1-0123456789-fb1.json",
        settings=SETTINGS,
    )
    return build_job(update, CreateFeedbackJob(config.evaluation_id, config), SETTINGS), config


def test_feedback_job_runs_the_evaluation_on_one_gpu_in_the_training_pod() -> None:
    job, config = feedback_job_for(FULL)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    training, _ = job_for(FULL)
    assert job["metadata"]["name"] == config.evaluation_id
    assert container(job)["command"] == ["rewardops-trainer", "feedback"]
    variables = env(job)
    assert FeedbackConfig.model_validate_json(variables[FEEDBACK_CONFIG_ENV]) == config
    assert RUN_CONFIG_ENV not in variables
    # Same credentials by reference, image, queue and security as the training Job.
    assert variables["AWS_SECRET_ACCESS_KEY"] == env(training)["AWS_SECRET_ACCESS_KEY"]
    assert container(job)["image"] == container(training)["image"]
    assert container(job)["securityContext"] == container(training)["securityContext"]
    assert job["spec"]["suspend"] is True
    resources = container(job)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"  # the training asks for 2
    assert resources["requests"]["cpu"] == "8"
    volumes = {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}
    assert "dshm" not in volumes  # one process: no NCCL shared memory


def test_feedback_config_carries_the_updates_pair_rules_and_models() -> None:
    _, config = feedback_job_for({"training": {"pairs": {"maxPairsPerPrompt": 3}}})
    assert config.pairs.max_pairs_per_prompt == 3
    assert config.promoted_model_uri == "s3://models/runs/new/model"
    assert config.previous_model_uri == "s3://models/old/model"
    assert (config.since, config.until) == (NOW, NOW + timedelta(minutes=5))
