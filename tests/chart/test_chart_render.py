"""The chart rendered by the real Helm engine: lint, strict Kubernetes validation, shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from rewardops_operator.settings import OperatorSettings
from tests.chart.rendering import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    REPO,
    ci_values,
    of_kind,
    one,
    render,
)

#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
#: Custom resources of other projects: no built-in schema; checked by hand below.
FOREIGN_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
CRD_FILE = "rewardops.dev_rewardmodelupdates.yaml"


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_ci_value_files_exist() -> None:
    assert {p.stem for p in CI_VALUES} >= {
        "default-values",
        "namespaced-values",
        "full-values",
        "minimal-values",
    }


@pytest.mark.parametrize("values_file", CI_VALUES, ids=_ids(CI_VALUES))
def test_helm_lint_is_clean(values_file: Path) -> None:
    import helm_python as helm

    report = helm.lint(CHART, ci_values(values_file), strict=True, namespace=NAMESPACE)
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [], report
    assert problems == [], report


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_file", CI_VALUES, ids=_ids(CI_VALUES))
def test_every_manifest_validates_strictly(values_file: Path, kube_version: str) -> None:
    objects = render(ci_values(values_file))
    assert objects, "nothing rendered"
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in FOREIGN_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata'].get('name')}: {error.message}")


def test_strict_validation_catches_a_wrong_field() -> None:
    # The validation above must be able to fail: a misspelt field is refused.
    deployment = one(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=_ids(CI_VALUES))
def test_namespaced_objects_land_in_the_release_namespace(values_file: Path) -> None:
    values = ci_values(values_file)
    watched = set(values.get("watchNamespaces", []))
    for obj in render(values):
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in {"Role", "RoleBinding"}:
            assert namespace in watched
        elif obj["kind"] in {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}:
            assert namespace is None
        else:
            assert namespace == NAMESPACE, obj["kind"]


# --- the CRD ------------------------------------------------------------------------------------


def test_chart_crd_copy_equals_crds_folder() -> None:
    source = (REPO / "crds" / CRD_FILE).read_text()
    copy = (CHART / "files" / "crds" / CRD_FILE).read_text()
    assert copy == source, (
        f"charts/rewardops/files/crds/{CRD_FILE} is stale: "
        f"cp crds/{CRD_FILE} charts/rewardops/files/crds/"
    )


@pytest.mark.parametrize("keep", [True, False])
def test_rendered_crd_equals_crds_folder(keep: bool) -> None:
    crd = one(render({"crds": {"keep": keep}}), "CustomResourceDefinition")
    expected = yaml.safe_load((REPO / "crds" / CRD_FILE).read_text())
    annotations = crd["metadata"].pop("annotations", {})
    labels = crd["metadata"].pop("labels")
    assert crd == expected
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert (annotations.get("helm.sh/resource-policy") == "keep") is keep


def test_packaged_chart_carries_the_crd(tmp_path: Path) -> None:
    import helm_python as helm

    archive = helm.package(CHART, destination=tmp_path)
    with helm.Chart.load(archive) as chart:
        rendered = chart.render({}, name="rewardops", namespace=NAMESPACE)
        names = {f["name"] for f in chart.files}
    assert f"files/crds/{CRD_FILE}" in names
    crd = yaml.safe_load(rendered["rewardops/templates/crd.yaml"])
    assert crd["spec"] == yaml.safe_load((REPO / "crds" / CRD_FILE).read_text())["spec"]


def test_crds_disabled_renders_no_crd() -> None:
    assert of_kind(render({"crds": {"enabled": False}}), "CustomResourceDefinition") == []


# --- the Deployment -----------------------------------------------------------------------------


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("values_file", CI_VALUES, ids=_ids(CI_VALUES))
def test_security_context_is_restricted(values_file: Path) -> None:
    pod = _pod(render(ci_values(values_file)))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"].get("runAsUser", 1) != 0
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["runAsNonRoot"] is True
        assert context.get("privileged", False) is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs a writable /tmp"


def test_platform_assigned_user_leaves_ids_out() -> None:
    nulls = {"runAsUser": None, "runAsGroup": None, "fsGroup": None}
    context = _pod(render({"podSecurityContext": nulls}))["securityContext"]
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context)
    assert context["runAsNonRoot"] is True


def test_one_replica_recreate_and_liveness_on_kopf_health() -> None:
    objects = render()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _pod(objects)["containers"][0]
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 8080
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert container["resources"]["limits"]["memory"]


def test_scheduling_and_pull_secrets_pass_through() -> None:
    values = ci_values(CHART / "ci" / "full-values.yaml")
    pod = _pod(render(values))
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["imagePullSecrets"] == values["imagePullSecrets"]
    assert pod["priorityClassName"] == values["priorityClassName"]
    image = pod["containers"][0]["image"]
    assert image == f"{values['image']['repository']}@{values['image']['digest']}"


def test_watch_mode_flags() -> None:
    args = _pod(render({"watchNamespaces": ["a", "b"]}))["containers"][0]["args"]
    assert "--namespace=a" in args
    assert "--namespace=b" in args
    assert "--all-namespaces" not in args
    assert "--all-namespaces" in _pod(render())["containers"][0]["args"]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=_ids(CI_VALUES))
def test_args_parse_as_the_operator_command(values_file: Path) -> None:
    from rewardops_operator.cli import main

    values = ci_values(values_file)
    args = _pod(render(values))["containers"][0]["args"]
    # The image's entrypoint is `rewardops operator`: click parses (and type-checks) the args
    # exactly as the container would, without running the operator.
    params = main.commands["operator"].make_context("operator", list(args)).params
    watched = values.get("watchNamespaces", [])
    assert params["namespaces"] == tuple(watched)
    assert params["clusterwide"] is not bool(watched)
    metrics = values.get("metrics", {})
    port = metrics.get("port", 9090) if metrics.get("enabled", True) else 0
    assert params["metrics_port"] == port
    probe = values.get("livenessProbe", {}).get("port", 8080)
    assert params["liveness"] == f"http://0.0.0.0:{probe}/healthz"
    assert params["peering"] == (values.get("operator", {}).get("peering") or None)


def _settings_from(pod: dict[str, Any]) -> OperatorSettings:
    env = pod["containers"][0]["env"]
    assert all("value" in e for e in env), "operator settings are plain values, never secrets"
    return OperatorSettings.from_env({e["name"]: e["value"] for e in env})


def test_operator_settings_come_from_values() -> None:
    values = ci_values(CHART / "ci" / "full-values.yaml")
    settings = _settings_from(_pod(render(values)))
    operator = values["operator"]
    assert settings.trainer_image == operator["trainerImage"]
    assert settings.storage_endpoint == operator["storage"]["endpoint"]
    assert settings.storage_secure is operator["storage"]["secure"]
    assert settings.storage_secret == operator["storage"]["secretName"]
    assert settings.job_ttl_seconds == operator["jobTtlSeconds"]
    assert settings.poll_seconds == operator["pollSeconds"]
    insecure = _settings_from(_pod(render({"operator": {"storage": {"secure": False}}})))
    assert insecure.storage_secure is False


def test_default_settings_equal_the_operators_defaults() -> None:
    # Unset endpoint/secret stay unset, and the chart's other defaults match the code's.
    assert _settings_from(_pod(render())) == OperatorSettings()


def test_every_rewardops_env_var_is_a_setting() -> None:
    env = _pod(render(ci_values(CHART / "ci" / "full-values.yaml")))["containers"][0]["env"]
    known = {f"REWARDOPS_{name.upper()}" for name in OperatorSettings.model_fields}
    chart_vars = {e["name"] for e in env if e["name"].startswith("REWARDOPS_")}
    assert chart_vars == known


# --- metrics --------------------------------------------------------------------------------


def test_metrics_service_and_service_monitor() -> None:
    objects = render(ci_values(CHART / "ci" / "full-values.yaml"))
    service = one(objects, "Service")
    monitor = one(objects, "ServiceMonitor")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_metrics_disabled_renders_no_service() -> None:
    objects = render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
    assert of_kind(objects, "Service") == []
    assert of_kind(objects, "ServiceMonitor") == []
    assert "--metrics-port=0" in _pod(objects)["containers"][0]["args"]
