"""examples/serving: valid Kubernetes objects, wired to the server's real interface."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from rewardops_trainer.cli import main


@pytest.fixture
def objects(repo_root: Path) -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((repo_root / "examples/serving/deployment.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs}


def scorer(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "scorer")


def test_the_manifests_are_valid_kubernetes(objects: dict[str, dict[str, Any]]) -> None:
    import kubernetes_validate

    assert set(objects) == {"Deployment", "Service"}
    for obj in objects.values():
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_restricted_security_context(objects: dict[str, dict[str, Any]]) -> None:
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], "the model cache needs a writable /tmp"


def test_probes_and_env_follow_the_serving_contract(objects: dict[str, dict[str, Any]]) -> None:
    deployment = objects["Deployment"]
    container = scorer(deployment)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["REWARD_MODEL_URI"]["value"].startswith("s3://")
    for secret in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[secret], "credentials only by secretKeyRef"
        assert env[secret]["valueFrom"]["secretKeyRef"]["key"] == secret
    # A bad model must stall the rollout, never take serving capacity away.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service_port = objects["Service"]["spec"]["ports"][0]["targetPort"]
    assert service_port in {p["name"] for p in container["ports"]}


def test_the_container_command_parses_with_the_real_cli(
    objects: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = scorer(objects["Deployment"])
    for entry in container["env"]:
        if "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
    assert container["command"] == ["rewardops-trainer"]
    args = container["args"]
    context = main.make_context("rewardops-trainer", list(args), resilient_parsing=True)
    command = main.get_command(context, args[0])
    assert command is not None
    sub = command.make_context(args[0], args[1:], parent=context)
    assert sub.params["model_uri"] == os.environ["REWARD_MODEL_URI"]
    assert sub.params["port"] == container["ports"][0]["containerPort"]
    grace = objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > sub.params["shutdown_timeout"], "SIGKILL must not cut in-flight requests"


def test_promotion_can_find_the_model_env(objects: dict[str, dict[str, Any]]) -> None:
    from rewardops_operator.kube.deployment import observe_deployment

    state = observe_deployment(objects["Deployment"], "scorer", "REWARD_MODEL_URI")
    assert state.model_uri == scorer(objects["Deployment"])["env"][0]["value"]
