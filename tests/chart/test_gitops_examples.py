"""GitOps and Kueue examples and the operations docs agree with the code they describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from rewardops_operator.api.models import RewardModelUpdate
from rewardops_operator.api.validation import check_file
from rewardops_operator.kube import deployment, labels
from tests.chart.rendering import REPO

GITOPS = REPO / "examples" / "gitops"
KUEUE = REPO / "examples" / "kueue"
DOCS = REPO / "docs"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _by_kind(path: Path, kind: str) -> list[dict[str, Any]]:
    return [d for d in _documents(path) if d.get("kind") == kind]


# --- Argo CD ----------------------------------------------------------------------------------


def test_argocd_cm_patch_carries_the_tested_health_script() -> None:
    (patch,) = _documents(GITOPS / "argocd-cm-patch.yaml")
    script = patch["data"]["resource.customizations.health.rewardops.dev_RewardModelUpdate"]
    assert script == (DOCS / "argocd" / "health.lua").read_text()


def test_ignore_differences_cover_every_field_promotion_writes() -> None:
    (app,) = _by_kind(GITOPS / "argocd-application.yaml", "Application")
    (ignore,) = app["spec"]["ignoreDifferences"]
    assert (ignore["group"], ignore["kind"]) == ("apps", "Deployment")
    assert ignore["managedFieldsManagers"] == ["rewardops"]
    paths = "\n".join(ignore["jqPathExpressions"])
    owned = (
        deployment.MODEL_VERSION_ANNOTATION,
        deployment.PREVIOUS_MODEL_ANNOTATION,
        deployment.PROMOTION_LOCK_ANNOTATION,
    )
    for annotation in owned:
        assert f'"{annotation}"' in paths
        assert annotation in (DOCS / "gitops.md").read_text()
    default_env = RewardModelUpdate.model_json_schema()["$defs"]["ServingSpec"]["properties"]
    assert f'select(.name == "{default_env["modelEnv"]["default"]}")' in paths
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    # The docs show the same block as the example.
    for expression in ignore["jqPathExpressions"]:
        assert expression in (DOCS / "gitops.md").read_text()


def test_pre_merge_workflow_runs_validate() -> None:
    (workflow,) = _documents(GITOPS / "validate-updates.yaml")
    steps = workflow["jobs"]["validate"]["steps"]
    commands = " ".join(step.get("run", "") for step in steps)
    assert "rewardops validate" in commands
    assert 'pip install "rewardops[operator]==' in commands  # validate needs jsonschema


# --- Kueue ------------------------------------------------------------------------------------


def test_kueue_update_is_valid_and_names_the_local_queue() -> None:
    updates, problems = check_file(KUEUE / "update.yaml")
    assert (updates, problems) == (1, [])
    (raw,) = _by_kind(KUEUE / "update.yaml", "RewardModelUpdate")
    update = RewardModelUpdate.from_object(raw)
    (local,) = _by_kind(KUEUE / "queues.yaml", "LocalQueue")
    (cluster,) = _by_kind(KUEUE / "queues.yaml", "ClusterQueue")
    flavors = {f["metadata"]["name"] for f in _by_kind(KUEUE / "queues.yaml", "ResourceFlavor")}
    assert update.spec.training.queue_name == local["metadata"]["name"]
    assert update.metadata.namespace == local["metadata"]["namespace"]
    assert local["spec"]["clusterQueue"] == cluster["metadata"]["name"]
    (group,) = cluster["spec"]["resourceGroups"]
    assert "nvidia.com/gpu" in group["coveredResources"]
    for flavor in group["flavors"]:
        assert flavor["name"] in flavors
        quota = {r["name"]: r["nominalQuota"] for r in flavor["resources"]}
        assert int(quota["nvidia.com/gpu"]) >= update.spec.training.gpus
        assert set(quota) == set(group["coveredResources"])
    # Kueue charges requests: the example states CPU and memory, not just GPUs.
    assert update.spec.training.resources is not None
    assert {"cpu", "memory"} <= set(update.spec.training.resources.requests)


def test_kueue_docs_name_the_label_the_operator_sets() -> None:
    assert labels.KUEUE_QUEUE_LABEL in (DOCS / "kueue.md").read_text()
    assert labels.KUEUE_QUEUE_LABEL in (KUEUE / "update.yaml").read_text()


# --- operations -------------------------------------------------------------------------------


def test_operations_doc_lists_every_operator_metric() -> None:
    from rewardops_operator import metrics

    text = (DOCS / "operations.md").read_text()
    families = [
        family
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.collect()
    ]
    assert families, "no metrics found in rewardops_operator.metrics"
    for family in families:
        # Counters' families drop the _total suffix their samples carry.
        name = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"`{name}" in text, f"docs/operations.md does not list {name}"


def test_operations_doc_names_the_real_finalizer() -> None:
    import inspect

    from rewardops_operator import handlers

    assert 'f"{GROUP}/finalizer"' in inspect.getsource(handlers.configure)
    assert "rewardops.dev/finalizer" in (DOCS / "operations.md").read_text()
