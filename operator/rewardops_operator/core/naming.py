"""Deterministic names: the run id (also the Job name), the lock holder, the model version.

A run is identified by the update's name, the generation that started it and a digest of the
spec. The ``promotion`` section is left out of the digest: it steers a run that already exists
(approving it, switching it to Manual, widening its rollout deadline), so changing it must not
throw away a trained candidate and start over.
"""

from __future__ import annotations

import hashlib
import json

from rewardops_operator.api.models import RewardModelUpdate, RewardModelUpdateSpec

#: Kubernetes object names used as labels (Job names) are DNS-1123 labels: at most 63 chars.
MAX_NAME = 63
DIGEST_CHARS = 10


def spec_digest(spec: RewardModelUpdateSpec) -> str:
    """Hex digest of what defines a run: the spec without ``promotion``.

    Fields left at their defaults are omitted, so an operator upgrade that adds a field (or
    changes a default) does not make every finished update look changed and retrain.
    """
    canonical = spec.model_dump(
        mode="json", by_alias=True, exclude={"promotion"}, exclude_defaults=True
    )
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def run_id(update: RewardModelUpdate) -> str:
    """``<name>-g<generation>-<digest>``, the name shortened so the whole fits 63 characters."""
    generation = update.metadata.generation or 0
    suffix = f"-g{generation}-{spec_digest(update.spec)}"
    # Names match [a-z0-9-] already; cutting may leave a trailing '-', which a label forbids.
    prefix = update.metadata.name[: MAX_NAME - len(suffix)].rstrip("-")
    return f"{prefix}{suffix}"


def is_run_of(run: str | None, update: RewardModelUpdate) -> bool:
    """Whether ``run`` (a status's run id) was started from the update's current spec."""
    return run is not None and run.endswith(f"-{spec_digest(update.spec)}")


def lock_holder(update: RewardModelUpdate) -> str:
    """``<namespace>/<name>[/<uid>]``: the uid tells a recreated update from a deleted one."""
    meta = update.metadata
    holder = f"{meta.namespace or 'default'}/{meta.name}"
    return f"{holder}/{meta.uid}" if meta.uid else holder


def model_version(model_uri: str) -> str:
    """A short label for a model: its run id when the URI is ``.../<run id>/model``."""
    parts = [part for part in model_uri.rstrip("/").split("/") if part]
    if len(parts) >= 2 and parts[-1] == "model":
        return parts[-2]
    return parts[-1] if parts else model_uri


def feedback_job_name(run: str, attempt: int) -> str:
    """``<run id>-fb<attempt>``: the update's name is shortened, never the generation or the
    digest, so the evaluation Jobs of two updates cannot share a name."""
    head, generation, digest = run.rsplit("-", 2)
    tail = f"-{generation}-{digest}-fb{attempt}"
    return f"{head[: MAX_NAME - len(tail)].rstrip('-')}{tail}"
