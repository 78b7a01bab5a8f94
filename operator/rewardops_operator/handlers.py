"""kopf wiring: one daemon per RewardModelUpdate drives it through the pure core.

Why a daemon and not change handlers: the core is a level-triggered function of spec, status
and observations, so the driver only needs "reconcile this update now". Each update's daemon
loops observe -> decide -> act -> write status, then sleeps until woken or until the core's
requeue hint (the operator's poll interval as a safety net). Watch handlers on the operator's
Jobs and on Deployments wake the owning updates within a watch event's latency; an index maps
a Deployment to the updates that serve through it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from rewardops_operator.api import conditions
from rewardops_operator.api.models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Phase,
    RewardModelUpdate,
    RewardModelUpdateStatus,
)
from rewardops_operator.core.actions import Action, EmitEvent
from rewardops_operator.core.reconcile import APPROVE_ANNOTATION, on_delete, reconcile
from rewardops_operator.kube.adapter import Cluster, KubeApi, LockHeld
from rewardops_operator.kube.labels import MANAGED_BY, MANAGED_BY_VALUE
from rewardops_operator.metrics import PhaseTracker
from rewardops_operator.settings import OperatorSettings

#: After a lost lock race or an API error: look again soon, not at the next poll.
RETRY_SECONDS = 2.0


@dataclass
class Context:
    """Operator-wide state, shared by every handler through kopf's memo."""

    cluster: Cluster
    tracker: PhaseTracker = field(default_factory=PhaseTracker)
    wakeups: dict[tuple[str | None, str], asyncio.Event] = field(default_factory=dict)
    #: What each daemon last reconciled (generation, annotations): wake only on a change.
    seen: dict[tuple[str | None, str], tuple[Any, ...]] = field(default_factory=dict)

    def wake(self, namespace: str | None, name: str | None) -> None:
        event = self.wakeups.get((namespace, name or ""))
        if event is not None:
            event.set()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Resources and namespaces are discovered once at start: no cluster-wide RBAC for CRDs or
    # namespaces (see kube/permissions.py). Install the CRD before the operator.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    if "rewardops" not in memo:
        operator_settings = OperatorSettings.from_env()
        memo["rewardops"] = Context(Cluster(KubeApi.from_environment(), operator_settings))
    # With scanning off, a CRD installed later would go unseen: exit so the pod restarts.
    if not _context(memo).cluster.api.serves_updates():
        raise kopf.PermanentError(
            f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}: install the CRD "
            "(crds/ or the Helm chart with crds.enabled=true), then restart the operator"
        )


def _body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def _context(memo: Any) -> Context:
    context: Context = memo["rewardops"]
    return context


def _fingerprint(body: kopf.Body) -> tuple[Any, ...]:
    """What of the update's own changes matters to the core: a new spec, an approval."""
    return (body.metadata.get("generation"), body.metadata.annotations.get(APPROVE_ANNOTATION))


# --- waking --------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, PLURAL)
def updates_by_deployment(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str | None, str], str]:
    return {(namespace, spec.get("serving", {}).get("deployment", "")): name}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def update_changed(
    body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    context = _context(memo)
    if context.seen.get((namespace, name)) != _fingerprint(body):
        context.wake(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={MANAGED_BY: MANAGED_BY_VALUE})
async def job_changed(namespace: str | None, meta: kopf.Meta, memo: Any, **_: Any) -> None:
    # The owner reference, not the update label: a label value may be a shortened name.
    for owner in meta.get("ownerReferences", []):
        if owner.get("kind") == KIND and owner.get("apiVersion") == API_VERSION:
            _context(memo).wake(namespace, owner.get("name"))


@kopf.on.event("apps", "v1", "deployments")
async def deployment_changed(namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    # kopf passes each index as a keyword argument named after its function.
    index: kopf.Index[tuple[str | None, str], str] = kwargs["updates_by_deployment"]
    for update in index.get((namespace, name), []):
        _context(memo).wake(namespace, update)


# --- driving -------------------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def drive(
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    context = _context(memo)
    key = (namespace, name)
    wakeup = context.wakeups.setdefault(key, asyncio.Event())
    try:
        while not stopped:
            wakeup.clear()
            try:
                delay = await reconcile_once(context, namespace, name)
            except LockHeld as held:
                logger.info(f"promotion lock: {held}")
                delay = RETRY_SECONDS
            except Exception:
                # The API or the object store failed; the next pass starts from scratch.
                logger.exception("reconcile failed; retrying")
                delay = RETRY_SECONDS
            waits = [asyncio.ensure_future(wakeup.wait()), asyncio.ensure_future(stopped.wait())]
            try:
                await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
    finally:
        context.wakeups.pop(key, None)
        context.seen.pop(key, None)


async def reconcile_once(context: Context, namespace: str | None, name: str) -> float | None:
    """One pass for one update. Returns seconds until the next pass (None: only on change)."""
    cluster = context.cluster
    raw = await asyncio.to_thread(cluster.api.get_update, namespace or "default", name)
    if raw is None or raw.get("metadata", {}).get("deletionTimestamp"):
        return None
    body = _body(raw)
    context.seen[(namespace, name)] = _fingerprint(body)
    try:
        update = RewardModelUpdate.from_object(raw)
    except ValidationError as error:
        await _reject_invalid(context, raw, error)
        return None
    observed = await asyncio.to_thread(cluster.observe, update, datetime.now(UTC))
    decision = reconcile(update, observed, cluster.settings)
    await _carry_out(context, update, raw, decision.actions)
    current = update.status or RewardModelUpdateStatus()
    if decision.status != current:
        await asyncio.to_thread(cluster.write_status, update, decision.status)
    context.tracker.observe(f"{namespace}/{name}", current.phase, decision.status.phase)
    if decision.requeue_after is None:
        return None  # finished: only a change (a new spec) wakes it
    return min(decision.requeue_after, cluster.settings.poll_seconds)


async def _carry_out(
    context: Context, update: RewardModelUpdate, raw: dict[str, Any], actions: list[Action]
) -> None:
    for action in actions:
        if isinstance(action, EmitEvent):
            kopf.event(_body(raw), type=action.type, reason=action.reason, message=action.message)
        else:
            await asyncio.to_thread(context.cluster.apply, update, action)


async def _reject_invalid(context: Context, raw: dict[str, Any], error: ValidationError) -> None:
    """A spec the API server accepted but the operator cannot run: say which field, run nothing."""
    meta = raw.get("metadata", {})
    problems = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
    )
    try:
        status = RewardModelUpdateStatus.model_validate(raw.get("status") or {})
    except ValidationError:
        status = RewardModelUpdateStatus()
    generation = meta.get("generation")
    if status.observed_generation == generation and status.phase == Phase.FAILED:
        return
    now = datetime.now(UTC)
    status = status.model_copy(
        update={
            "phase": Phase.FAILED,
            "observed_generation": generation,
            "conditions": conditions.set_condition(
                status.conditions,
                conditions.READY,
                "False",
                "InvalidSpec",
                problems,
                generation=generation,
                now=now,
            ),
        }
    )
    kopf.event(_body(raw), type="Warning", reason="InvalidSpec", message=problems)
    body = status.model_dump(mode="json", by_alias=True)
    await asyncio.to_thread(
        context.cluster.api.patch_update_status,
        meta.get("namespace", "default"),
        meta["name"],
        body,
    )


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def cleanup(
    body: kopf.Body, namespace: str | None, name: str, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    """Stop the run's Job and release the promotion lock; the finalizer then goes."""
    context = _context(memo)
    context.tracker.forget(f"{namespace}/{name}")
    try:
        update = RewardModelUpdate.from_object(dict(body))
    except ValidationError:
        logger.warning("invalid spec: no Job was created for it, nothing to clean up")
        return
    cluster = context.cluster
    # An API error raises: kopf retries, and the finalizer stays until the Job is really gone.
    observed = await asyncio.to_thread(cluster.observe, update, datetime.now(UTC))
    await _carry_out(context, update, dict(body), on_delete(update, observed))
