from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest

from rewardops_operator.core.actions import SetServedModel
from rewardops_operator.kube.deployment import (
    MODEL_VERSION_ANNOTATION,
    PREVIOUS_MODEL_ANNOTATION,
    PROMOTION_LOCK_ANNOTATION,
    lock_patch,
    observe_deployment,
    observe_job,
    set_model_patch,
)

K8S_VERSION = "1.33.0"
OLD = "s3://models/runs/old/model"
NEW = "s3://models/runs/rm-g2-abc/model"


def deployment() -> dict[str, Any]:
    """A serving Deployment as the API server returns it, sidecar and all."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "reward-scorer",
            "namespace": "ml",
            "generation": 7,
            "resourceVersion": "4242",
            "labels": {"app": "reward-scorer"},
            "annotations": {"argocd.argoproj.io/tracking-id": "ml:apps/Deployment:ml/rs"},
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "reward-scorer"}},
            "template": {
                "metadata": {"labels": {"app": "reward-scorer"}},
                "spec": {
                    "containers": [
                        {
                            "name": "proxy",
                            "image": "envoy:1",
                            "env": [{"name": "REWARD_MODEL_URI", "value": "not-this-one"}],
                        },
                        {
                            "name": "scorer",
                            "image": "ghcr.io/rewardops/trainer:0.1.0",
                            "args": ["serve"],
                            "env": [
                                {"name": "LOG_LEVEL", "value": "info"},
                                {"name": "REWARD_MODEL_URI", "value": OLD},
                                {"name": "PORT", "value": "8080"},
                            ],
                        },
                    ]
                },
            },
        },
        "status": {
            "observedGeneration": 6,
            "replicas": 3,
            "updatedReplicas": 1,
            "availableReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
            ],
        },
    }


def promote(previous: str | None = OLD, container: str = "scorer") -> SetServedModel:
    return SetServedModel(
        deployment="reward-scorer",
        container=container,
        env="REWARD_MODEL_URI",
        model_uri=NEW,
        model_version="rm-g2-abc",
        previous_model_uri=previous,
    )


def without_status(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "status"}


def test_observe_deployment_reads_counts_env_and_annotations() -> None:
    obj = deployment()
    obj["metadata"]["annotations"][PROMOTION_LOCK_ANNOTATION] = "ml/a/uid"
    obj["metadata"]["annotations"][PREVIOUS_MODEL_ANNOTATION] = "s3://models/older"
    state = observe_deployment(obj, "scorer", "REWARD_MODEL_URI")
    assert (state.name, state.generation, state.observed_generation) == ("reward-scorer", 7, 6)
    assert (state.desired_replicas, state.updated_replicas, state.available_replicas) == (3, 1, 2)
    assert state.containers == ("proxy", "scorer")
    assert state.model_uri == OLD
    assert (state.lock_holder, state.previous_model) == ("ml/a/uid", "s3://models/older")
    assert not state.progress_deadline_exceeded
    assert observe_deployment(obj, None, "REWARD_MODEL_URI").model_uri == "not-this-one"
    assert observe_deployment(obj, "missing", "REWARD_MODEL_URI").model_uri is None
    assert observe_deployment(obj, "scorer", "OTHER").model_uri is None


def test_observe_deployment_defaults_and_stalls() -> None:
    bare: dict[str, Any] = {
        "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}},
        "status": {
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ]
        },
    }
    state = observe_deployment(bare, None, "REWARD_MODEL_URI")
    assert (state.generation, state.observed_generation, state.desired_replicas) == (0, 0, 1)
    assert (state.updated_replicas, state.available_replicas) == (0, 0)
    assert state.progress_deadline_exceeded
    assert (state.model_uri, state.lock_holder) == (None, None)
    scaled = observe_deployment({"spec": {"replicas": 0}}, None, "X")
    assert (scaled.desired_replicas, scaled.containers, scaled.model_uri) == (0, (), None)
    from_secret = copy.deepcopy(bare)
    from_secret["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "REWARD_MODEL_URI", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}}
    ]
    assert observe_deployment(from_secret, "c", "REWARD_MODEL_URI").model_uri is None


def test_patch_changes_only_the_model_env_and_the_annotations() -> None:
    original = deployment()
    before = json.dumps(original)
    patched = jsonpatch.apply_patch(original, set_model_patch(original, promote()))
    assert json.dumps(original) == before  # the input is not mutated
    expected = deployment()
    expected["spec"]["template"]["spec"]["containers"][1]["env"][1]["value"] = NEW
    expected["spec"]["template"]["metadata"]["annotations"] = {
        MODEL_VERSION_ANNOTATION: "rm-g2-abc"
    }
    expected["metadata"]["annotations"][PREVIOUS_MODEL_ANNOTATION] = OLD
    # Byte-identical otherwise: same keys, same order, the sidecar's same-named env untouched.
    assert json.dumps(patched) == json.dumps(expected)
    kubernetes_validate.validate(without_status(patched), K8S_VERSION, strict=True)
    state = observe_deployment(patched, "scorer", "REWARD_MODEL_URI")
    assert (state.model_uri, state.previous_model) == (NEW, OLD)


def test_patch_adds_a_missing_env_var_env_list_and_annotation_maps() -> None:
    obj = deployment()
    scorer = obj["spec"]["template"]["spec"]["containers"][1]
    scorer["env"] = [{"name": "LOG_LEVEL", "value": "info"}]
    del obj["metadata"]["annotations"]
    obj["spec"]["template"]["metadata"]["annotations"] = {"prometheus.io/scrape": "true"}
    patched = jsonpatch.apply_patch(obj, set_model_patch(obj, promote()))
    env = patched["spec"]["template"]["spec"]["containers"][1]["env"]
    assert env == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "REWARD_MODEL_URI", "value": NEW},
    ]
    assert patched["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        MODEL_VERSION_ANNOTATION: "rm-g2-abc",
    }
    assert patched["metadata"]["annotations"] == {PREVIOUS_MODEL_ANNOTATION: OLD}
    del obj["spec"]["template"]["spec"]["containers"][1]["env"]
    del obj["spec"]["template"]["metadata"]
    patched = jsonpatch.apply_patch(obj, set_model_patch(obj, promote()))
    assert patched["spec"]["template"]["spec"]["containers"][1]["env"] == [
        {"name": "REWARD_MODEL_URI", "value": NEW}
    ]
    assert patched["spec"]["template"]["metadata"] == {
        "annotations": {MODEL_VERSION_ANNOTATION: "rm-g2-abc"}
    }


def test_patch_replaces_a_value_from_reference() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][1]["env"][1] = {
        "name": "REWARD_MODEL_URI",
        "valueFrom": {"configMapKeyRef": {"name": "model", "key": "uri"}},
    }
    patched = jsonpatch.apply_patch(obj, set_model_patch(obj, promote()))
    assert patched["spec"]["template"]["spec"]["containers"][1]["env"][1] == {
        "name": "REWARD_MODEL_URI",
        "value": NEW,
    }
    kubernetes_validate.validate(without_status(patched), K8S_VERSION, strict=True)


def test_reordered_containers_make_the_patch_fail() -> None:
    obj = deployment()
    patch = set_model_patch(obj, promote())
    reordered = deployment()
    containers = reordered["spec"]["template"]["spec"]["containers"]
    containers.reverse()
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(reordered, patch)
    moved_env = deployment()
    env = moved_env["spec"]["template"]["spec"]["containers"][1]["env"]
    env.append(env.pop(0))  # the model var moves from index 1 to 0
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved_env, patch)


def test_patch_for_a_missing_container_is_refused() -> None:
    with pytest.raises(ValueError, match="no container 'gone'"):
        set_model_patch(deployment(), promote(container="gone"))


def test_no_previous_model_removes_a_stale_record() -> None:
    obj = deployment()
    obj["metadata"]["annotations"][PREVIOUS_MODEL_ANNOTATION] = "s3://stale"
    patched = jsonpatch.apply_patch(obj, set_model_patch(obj, promote(previous=None)))
    assert PREVIOUS_MODEL_ANNOTATION not in patched["metadata"]["annotations"]
    clean = deployment()
    ops = set_model_patch(clean, promote(previous=None))
    assert not any(op["path"].startswith("/metadata") for op in ops)


def test_lock_patch_sets_and_removes_with_a_merge_patch() -> None:
    obj = deployment()
    locked = jsonpatch.apply_patch(obj, [])  # a copy
    merge(locked, lock_patch("ml/a/uid"))
    assert locked["metadata"]["annotations"][PROMOTION_LOCK_ANNOTATION] == "ml/a/uid"
    merge(locked, lock_patch(None))
    assert locked == obj


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 merge patch, as the API server applies it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"active": 1}, (1, False, False, False, "")),
        (
            {"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]},
            (0, False, False, True, ""),
        ),
        (
            {
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True"},
                    {"type": "Complete", "status": "True"},
                ]
            },
            (0, True, False, False, ""),
        ),
        (
            {"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]},
            (0, False, False, False, ""),
        ),
        (
            {
                "conditions": [
                    {"type": "FailureTarget", "status": "True"},
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "PodFailurePolicy",
                        "message": "Container trainer failed with exit code 3",
                    },
                ]
            },
            (0, False, True, False, "PodFailurePolicy: Container trainer failed with exit code 3"),
        ),
        (
            {
                "conditions": [
                    {"type": "Suspended", "status": "False"},
                    {"type": "Failed", "status": "True"},
                ]
            },
            (0, False, True, False, ""),
        ),
    ],
)
def test_observe_job(status: dict[str, Any], expected: tuple[int, bool, bool, bool, str]) -> None:
    state = observe_job({"metadata": {"name": "rm-g1-abc"}, "status": status})
    assert state.name == "rm-g1-abc"
    assert (state.active, state.succeeded, state.failed, state.suspended, state.message) == expected
    assert state.exit_code is None
