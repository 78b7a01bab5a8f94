"""The RBAC rules the operator needs, and no more: the Helm chart renders its Role from here.

Each rule names who calls it. Keep this in step with kube/adapter.py (every request it makes)
and handlers.py (what kopf watches and patches). kopf's resource and namespace scanning is
switched off (handlers.configure), so no rule for CustomResourceDefinitions or Namespaces is
needed; API discovery is open to every authenticated client.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardops_operator.api.models import GROUP, PLURAL


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str

    def to_dict(self) -> dict[str, list[str]]:
        """The PolicyRule as Kubernetes spells it."""
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


RULES: tuple[Rule, ...] = (
    Rule(
        (GROUP,),
        (PLURAL,),
        ("get", "list", "watch", "patch"),
        "kopf watches updates and patches its finalizer and annotations; the daemon reads them",
    ),
    Rule((GROUP,), (f"{PLURAL}/status",), ("patch",), "adapter writes the status"),
    Rule(
        ("batch",),
        ("jobs",),
        ("get", "list", "watch", "create", "delete"),
        "kopf watches training Jobs; adapter creates, reads and deletes them",
    ),
    Rule(
        ("apps",),
        ("deployments",),
        ("get", "list", "watch", "patch"),
        "kopf watches serving Deployments; adapter reads them, patches the model and the lock",
    ),
    Rule(
        ("",),
        ("pods",),
        ("list",),
        "adapter reads a failed training pod's termination message (the trainer's error)",
    ),
    Rule(("",), ("secrets",), ("get",), "adapter reads the storage credentials Secret"),
    Rule(("",), ("events",), ("create",), "kopf.event posts the update's Events"),
)

#: Only with ``rewardops operator --peering NAME``: kopf's peering objects (kopf.dev CRDs).
PEERING_RULES: tuple[Rule, ...] = (
    Rule(
        ("kopf.dev",),
        ("kopfpeerings", "clusterkopfpeerings"),
        ("get", "list", "watch", "patch"),
        "kopf peering: several operator replicas, one active",
    ),
)


def policy_rules(*, peering: bool = False) -> list[dict[str, list[str]]]:
    """The rules as Kubernetes PolicyRules, for the chart's Role or ClusterRole."""
    return [rule.to_dict() for rule in RULES + (PEERING_RULES if peering else ())]
