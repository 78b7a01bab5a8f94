"""The trainer's Job manifests (pure): a training run (``rewardops-trainer train``) and a
fresh-feedback evaluation (``rewardops-trainer feedback``), in the same pod template.

The pod runs under the restricted Pod Security Standard: non-root, no privilege escalation, all
capabilities dropped, a read-only root filesystem with emptyDirs for /tmp and the scratch space
the trainer writes models and pairs to.
"""

from __future__ import annotations

from typing import Any

from rewardops_operator.api.models import API_VERSION, KIND, RewardModelUpdate
from rewardops_operator.core.actions import CreateFeedbackJob, CreateJob
from rewardops_operator.kube.labels import KUEUE_QUEUE_LABEL, run_labels
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.contract import (
    FEEDBACK_CONFIG_ENV,
    RUN_CONFIG_ENV,
    FeedbackConfig,
    RunConfig,
)
from rewardops_trainer.contract.exit_codes import PERMANENT_EXIT_CODES

CONTAINER = "trainer"
GPU_RESOURCE = "nvidia.com/gpu"
SCRATCH = "/scratch"
#: The non-root user of the trainer image.
USER_ID = 1000


def trainer_command(gpus: int) -> list[str]:
    """``rewardops-trainer train``; with several GPUs, one process per GPU under the trainer's
    own launcher, which (unlike torchrun) exits with the ranks' exit code, so the
    podFailurePolicy still fails a bad config at once."""
    if gpus > 1:
        return ["rewardops-trainer", "launch", f"--nproc-per-node={gpus}", "train"]
    return ["rewardops-trainer", "train"]


def _env(
    update: RewardModelUpdate, config: RunConfig | FeedbackConfig, settings: OperatorSettings
) -> list[Any]:
    name = RUN_CONFIG_ENV if isinstance(config, RunConfig) else FEEDBACK_CONFIG_ENV
    env: list[dict[str, Any]] = [{"name": name, "value": config.to_json()}]
    storage = config.storage
    if storage.endpoint:
        env.append({"name": "S3_ENDPOINT", "value": storage.endpoint})
        env.append({"name": "S3_SECURE", "value": "true" if storage.secure else "false"})
    if storage.region:
        env.append({"name": "AWS_REGION", "value": storage.region})
    credentials = update.spec.storage.credentials
    secret = credentials.secret_name if credentials else settings.storage_secret
    if secret is not None:
        # By reference only: the keys never appear in the Job, its spec or the run config.
        keys = (
            (credentials.access_key_id_key, credentials.secret_access_key_key)
            if credentials
            else ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        )
        for name, key in zip(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), keys, strict=True):
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    env.extend(
        [
            {"name": "HOME", "value": SCRATCH},
            {"name": "TMPDIR", "value": SCRATCH},
            # Models come from object storage; a hub download would be a silent dependency.
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ]
    )
    return env


def _resources(update: RewardModelUpdate, gpus: int) -> dict[str, Any]:
    training = update.spec.training
    requests = dict(training.resources.requests) if training.resources else {}
    limits = dict(training.resources.limits) if training.resources else {}
    if gpus > 0:
        # Extended resources need requests equal to limits; quantities are strings.
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def build_job(
    update: RewardModelUpdate, action: CreateJob | CreateFeedbackJob, settings: OperatorSettings
) -> dict[str, Any]:
    """The batch/v1 Job for ``action``, owned (controller reference) by ``update``.

    An evaluation runs on the training's image, queue and resources, but on one GPU at most:
    it scores a few thousand pairs, which data parallelism would not speed up.
    """
    meta = update.metadata
    if not meta.uid:
        raise ValueError(f"metadata.uid of {meta.name!r} is required for the Job's ownerReference")
    training = update.spec.training
    if isinstance(action, CreateJob):
        config: RunConfig | FeedbackConfig = action.run_config
        gpus = training.gpus
        command = trainer_command(gpus)
    else:
        config = action.config
        gpus = min(training.gpus, 1)
        command = ["rewardops-trainer", "feedback"]
    labels = run_labels(update, action.name)
    job_labels = dict(labels)
    if training.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = training.queue_name
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "scratch", "mountPath": SCRATCH},
    ]
    if gpus > 1:
        # NCCL between the GPU processes needs more shared memory than the runtime's 64 MiB.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": training.image or settings.trainer_image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": _env(update, config, settings),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    resources = _resources(update, gpus)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The trainer talks to object storage only, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if training.service_account_name:
        pod_spec["serviceAccountName"] = training.service_account_name
    if training.priority_class_name:
        pod_spec["priorityClassName"] = training.priority_class_name
    if training.node_selector:
        pod_spec["nodeSelector"] = dict(training.node_selector)
    if training.tolerations:
        pod_spec["tolerations"] = [
            toleration.model_dump(by_alias=True, exclude_none=True)
            for toleration in training.tolerations
        ]
    job_spec: dict[str, Any] = {
        "backoffLimit": training.backoff_limit,
        "activeDeadlineSeconds": training.active_deadline_seconds,
        "ttlSecondsAfterFinished": settings.job_ttl_seconds,
        "podFailurePolicy": {
            "rules": [
                {
                    # Bad config or data fails the same way every time: do not retry.
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": sorted(int(code) for code in PERMANENT_EXIT_CODES),
                    },
                },
                {
                    # Preemption, eviction, node drain: not the run's fault, no retry spent.
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if training.queue_name:
        # Kueue admits (unsuspends) the Job once its LocalQueue has quota.
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": action.name,
            "namespace": meta.namespace or "default",
            "labels": job_labels,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": meta.name,
                    "uid": meta.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


def pod_termination(pod: dict[str, Any]) -> tuple[str, int | None]:
    """The trainer container's last termination message and exit code in a pod object.

    With ``FallbackToLogsOnError`` the message is the tail of the trainer's log when it wrote
    no termination message: the one-line error the trainer prints on a failure.
    """
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER:
            continue
        state = status.get("state") or {}
        last = status.get("lastState") or {}
        terminated = state.get("terminated") or last.get("terminated")
        if terminated:
            return (terminated.get("message") or "").strip(), terminated.get("exitCode")
    return "", None
