"""Map a resource's s3:// URIs onto a local directory, so `rewardops run` needs no S3 server."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from rewardops_operator.api.models import RewardModelUpdate


def to_local(uri: str, store: Path) -> str:
    """``s3://bucket/key`` -> ``file://<store>/bucket/key``; other URIs are returned as they are."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        return uri
    path = store.resolve() / parsed.netloc / parsed.path.lstrip("/")
    suffix = "/" if uri.endswith("/") else ""
    return path.as_uri() + suffix


def localize(update: RewardModelUpdate, store: Path) -> RewardModelUpdate:
    """A copy of ``update`` whose object-store URIs all point into ``store``."""
    spec = update.spec
    training = spec.training
    changes = {
        "telemetry": spec.telemetry.model_copy(update={"uri": to_local(spec.telemetry.uri, store)}),
        "output": spec.output.model_copy(update={"uri": to_local(spec.output.uri, store)}),
        "golden_set": spec.golden_set
        and spec.golden_set.model_copy(update={"uri": to_local(spec.golden_set.uri, store)}),
        "training": training.model_copy(
            update={
                "base_model_uri": training.base_model_uri
                and to_local(training.base_model_uri, store)
            }
        ),
    }
    return update.model_copy(update={"spec": spec.model_copy(update=changes)})
