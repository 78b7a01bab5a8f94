"""The chart's RBAC grants exactly what the operator uses: kube/permissions.py, nothing more."""

from __future__ import annotations

from typing import Any

import pytest

from rewardops_operator.kube import permissions
from tests.chart.rendering import NAMESPACE, RELEASE, of_kind, one, render

STALE = "charts/rewardops/templates/_rbac.tpl differs from kube/permissions.py: update the chart"


def _subjects_are_the_operator(binding: dict[str, Any]) -> None:
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]
    deployment_sa = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert deployment_sa["serviceAccountName"] == RELEASE


@pytest.mark.parametrize("peering", [False, True])
def test_cluster_wide_mode_grants_exactly_the_operators_rules(peering: bool) -> None:
    objects = render({"operator": {"peering": "rewardops" if peering else ""}})
    role = one(objects, "ClusterRole")
    assert role["rules"] == permissions.policy_rules(peering=peering), STALE
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    _subjects_are_the_operator(binding)
    assert of_kind(objects, "Role") == []
    assert of_kind(objects, "RoleBinding") == []
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ("--peering=rewardops" in args) is peering


def test_namespaced_mode_grants_the_rules_only_in_watched_namespaces() -> None:
    watched = ["ml-serving", "ml-staging"]
    objects = render({"watchNamespaces": watched})
    assert of_kind(objects, "ClusterRole") == []
    assert of_kind(objects, "ClusterRoleBinding") == []
    roles = {r["metadata"]["namespace"]: r for r in of_kind(objects, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(objects, "RoleBinding")}
    assert sorted(roles) == sorted(bindings) == watched
    for namespace in watched:
        assert roles[namespace]["rules"] == permissions.policy_rules(), STALE
        assert bindings[namespace]["roleRef"]["kind"] == "Role"
        assert bindings[namespace]["roleRef"]["name"] == roles[namespace]["metadata"]["name"]
        _subjects_are_the_operator(bindings[namespace])


def test_no_wildcards_and_no_secret_listing() -> None:
    for rule in one(render(), "ClusterRole")["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        if "secrets" in rule["resources"]:
            # Listing or watching Secrets would expose every credential in the namespace.
            assert rule["verbs"] == ["get"]


def test_rbac_disabled_renders_no_roles() -> None:
    objects = render({"rbac": {"create": False}, "watchNamespaces": ["a"]})
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
