from __future__ import annotations

from pathlib import Path

from rewardops_operator.api.models import RewardModelUpdate
from rewardops_operator.local.uris import localize, to_local


def test_s3_uri_maps_into_the_store(tmp_path: Path) -> None:
    assert to_local("s3://bucket/a/b.jsonl", tmp_path) == (tmp_path / "bucket/a/b.jsonl").as_uri()
    assert to_local("s3://bucket/prefix/", tmp_path).endswith("/bucket/prefix/")
    assert to_local("file:///elsewhere", tmp_path) == "file:///elsewhere"


def test_localize_rewrites_every_store_uri(tmp_path: Path) -> None:
    update = RewardModelUpdate.model_validate(
        {
            "metadata": {"name": "u"},
            "spec": {
                "serving": {"deployment": "d"},
                "telemetry": {"uri": "s3://t/events/"},
                "output": {"uri": "s3://o/runs/"},
                "goldenSet": {"uri": "s3://g/golden.jsonl"},
                "training": {"baseModelUri": "s3://m/base/"},
            },
        }
    )
    spec = localize(update, tmp_path).spec
    uris = [spec.telemetry.uri, spec.output.uri, spec.training.base_model_uri]
    assert spec.golden_set is not None
    uris.append(spec.golden_set.uri)
    assert all(str(uri).startswith(tmp_path.resolve().as_uri()) for uri in uris)
    assert update.spec.telemetry.uri == "s3://t/events/", "the original is left alone"
