"""The serving Deployment and the training Job as the core sees them, and the patches it sends.

Promotion changes exactly three things in the Deployment, so a GitOps tool can be told to
ignore exactly those (docs/gitops.md): the serving container's model env var, the pod-template
annotation with the model version, and the Deployment's record of the previous model.
"""

from __future__ import annotations

from typing import Any

from rewardops_operator.core.actions import SetServedModel
from rewardops_operator.core.observations import DeploymentState, JobState

PROMOTION_LOCK_ANNOTATION = "rewardops.dev/promotion-lock"
MODEL_VERSION_ANNOTATION = "rewardops.dev/model-version"
PREVIOUS_MODEL_ANNOTATION = "rewardops.dev/previous-model"


def _pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer; '/' in a key (annotations) is escaped as '~1'."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    containers: list[dict[str, Any]] = (template.get("spec") or {}).get("containers") or []
    return containers


def _serving_container(obj: dict[str, Any], container: str | None) -> dict[str, Any] | None:
    containers = _containers(obj)
    if container is None:
        return containers[0] if containers else None
    return next((c for c in containers if c.get("name") == container), None)


def observe_deployment(obj: dict[str, Any], container: str | None, env: str) -> DeploymentState:
    """What the core needs of a Deployment; ``container`` None means the first container."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    serving = _serving_container(obj, container)
    model_uri = None
    if serving is not None:
        # A value from a ConfigMap or Secret (valueFrom) is not one promotion manages: None.
        entry = next((e for e in serving.get("env") or [] if e.get("name") == env), None)
        model_uri = entry.get("value") if entry else None
    stalled = any(
        c.get("type") == "Progressing"
        and c.get("status") == "False"
        and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    replicas = spec.get("replicas")
    return DeploymentState(
        name=meta.get("name", ""),
        generation=meta.get("generation", 0),
        observed_generation=status.get("observedGeneration", 0),
        # The API server defaults replicas to 1 when the manifest leaves it out.
        desired_replicas=1 if replicas is None else replicas,
        updated_replicas=status.get("updatedReplicas", 0),
        available_replicas=status.get("availableReplicas", 0),
        progress_deadline_exceeded=stalled,
        containers=tuple(c.get("name", "") for c in _containers(obj)),
        model_uri=model_uri,
        lock_holder=annotations.get(PROMOTION_LOCK_ANNOTATION),
        previous_model=annotations.get(PREVIOUS_MODEL_ANNOTATION),
    )


def set_model_patch(obj: dict[str, Any], action: SetServedModel) -> list[dict[str, Any]]:
    """An RFC 6902 JSON patch that points ``action.container`` at ``action.model_uri``.

    It starts with ``test`` ops on the container's (and the env entry's) name at the index
    read from ``obj``: if the list changed in between, the API server refuses the whole patch
    instead of writing into the wrong container.
    """
    containers = _containers(obj)
    index = next((i for i, c in enumerate(containers) if c.get("name") == action.container), None)
    if index is None:
        raise ValueError(f"Deployment {action.deployment!r} has no container {action.container!r}")
    base = ("spec", "template", "spec", "containers", index)
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": _pointer(*base, "name"), "value": action.container}
    ]
    entry = {"name": action.env, "value": action.model_uri}
    env = containers[index].get("env")
    if env is None:
        ops.append({"op": "add", "path": _pointer(*base, "env"), "value": [entry]})
    else:
        at = next((i for i, e in enumerate(env) if e.get("name") == action.env), None)
        if at is None:
            ops.append({"op": "add", "path": _pointer(*base, "env", "-"), "value": entry})
        else:
            # Replacing the whole entry also drops a valueFrom that would clash with value.
            ops.append(
                {"op": "test", "path": _pointer(*base, "env", at, "name"), "value": action.env}
            )
            ops.append({"op": "replace", "path": _pointer(*base, "env", at), "value": entry})
    template = (obj.get("spec") or {}).get("template") or {}
    template_meta = template.get("metadata")
    if template_meta is None:
        ops.append(
            {
                "op": "add",
                "path": "/spec/template/metadata",
                "value": {"annotations": {MODEL_VERSION_ANNOTATION: action.model_version}},
            }
        )
    else:
        ops.append(
            _annotation_op(
                ("spec", "template", "metadata"),
                template_meta,
                MODEL_VERSION_ANNOTATION,
                action.model_version,
            )
        )
    meta = obj.get("metadata") or {}
    if action.previous_model_uri is not None:
        ops.append(
            _annotation_op(
                ("metadata",), meta, PREVIOUS_MODEL_ANNOTATION, action.previous_model_uri
            )
        )
    elif PREVIOUS_MODEL_ANNOTATION in (meta.get("annotations") or {}):
        ops.append(
            {"op": "remove", "path": _pointer("metadata", "annotations", PREVIOUS_MODEL_ANNOTATION)}
        )
    return ops


def _annotation_op(
    where: tuple[str, ...], meta: dict[str, Any], key: str, value: str
) -> dict[str, Any]:
    # "add" on an object member creates or replaces it; the map itself may be missing.
    if meta.get("annotations") is None:
        return {"op": "add", "path": _pointer(*where, "annotations"), "value": {key: value}}
    return {"op": "add", "path": _pointer(*where, "annotations", key), "value": value}


def lock_patch(holder: str | None) -> dict[str, Any]:
    """A merge patch that sets (or, with None, removes) the promotion lock annotation.

    Send it with the observed ``metadata.resourceVersion`` added, so that a concurrent writer
    makes it fail with 409 Conflict instead of both taking the lock.
    """
    return {"metadata": {"annotations": {PROMOTION_LOCK_ANNOTATION: holder}}}


def observe_job(obj: dict[str, Any]) -> JobState:
    """What the core needs of a Job: finished (Complete/Failed), suspended, active pods.

    Only the final conditions count: ``SuccessCriteriaMet`` and ``FailureTarget`` come before
    the Job's pods are gone.
    """
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    true = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    failed = true.get("Failed")
    message = ""
    if failed is not None:
        message = ": ".join(part for part in (failed.get("reason"), failed.get("message")) if part)
    return JobState(
        name=meta.get("name", ""),
        active=status.get("active") or 0,
        succeeded="Complete" in true,
        failed=failed is not None,
        suspended="Suspended" in true,
        message=message,
    )
