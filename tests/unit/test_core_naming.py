from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rewardops_operator.api.models import RewardModelUpdate
from rewardops_operator.core.naming import is_run_of, lock_holder, model_version, run_id

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def make_update(
    spec: dict[str, Any] | None = None,
    *,
    name: str = "weekly-refresh",
    generation: int | None = 1,
    uid: str | None = "uid-1",
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> RewardModelUpdate:
    """A RewardModelUpdate from its wire form; ``spec`` entries replace the minimal spec's."""
    body: dict[str, Any] = {
        "serving": {"deployment": "reward-scorer"},
        "telemetry": {"uri": "s3://telemetry/assistant/"},
        "output": {"uri": "s3://reward-models/runs/"},
        **(spec or {}),
    }
    obj: dict[str, Any] = {
        "apiVersion": "rewardops.dev/v1alpha1",
        "kind": "RewardModelUpdate",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "generation": generation,
            "uid": uid,
            "annotations": annotations or {},
        },
        "spec": body,
    }
    if status is not None:
        obj["status"] = status
    return RewardModelUpdate.from_object(obj)


def test_run_id_is_deterministic_and_shaped() -> None:
    first, second = run_id(make_update()), run_id(make_update())
    assert first == second
    assert re.fullmatch(r"weekly-refresh-g1-[0-9a-f]{10}", first)


def test_run_id_changes_with_generation_and_spec() -> None:
    base = run_id(make_update())
    assert run_id(make_update(generation=2)) != base
    assert run_id(make_update({"training": {"gpus": 2}})) != base
    assert run_id(make_update(name="other")) != base


def test_promotion_is_not_part_of_the_run() -> None:
    # Approving (GitOps: a spec edit, so a new generation) must continue the run, not retrain.
    running = make_update({"promotion": {"mode": "Manual"}}, status={"runId": "x"})
    approved = make_update({"promotion": {"mode": "Manual", "approved": True}}, generation=2)
    assert is_run_of(run_id(running), approved)
    assert not is_run_of(run_id(running), make_update({"training": {"gpus": 0}}))
    assert not is_run_of(None, approved)


def test_explicit_defaults_do_not_change_the_digest() -> None:
    explicit = make_update({"training": {"gpus": 1, "backoffLimit": 2}})
    assert run_id(explicit) == run_id(make_update())


@given(
    name=st.from_regex(r"[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?", fullmatch=True),
    generation=st.integers(min_value=1, max_value=2**62),
)
def test_run_id_is_a_dns_label_for_any_name(name: str, generation: int) -> None:
    value = run_id(make_update(name=name, generation=generation))
    assert len(value) <= 63
    assert DNS_LABEL.match(value), value
    assert value.endswith(f"-g{generation}-{value[-10:]}")


def test_lock_holder_names_namespace_name_and_uid() -> None:
    assert lock_holder(make_update()) == "ml/weekly-refresh/uid-1"
    assert lock_holder(make_update(uid=None)) == "ml/weekly-refresh"


def test_model_version_is_the_run_id_of_a_run_model() -> None:
    assert model_version("s3://out/runs/rm-g3-abc/model/") == "rm-g3-abc"
    assert model_version("s3://models/base-v2") == "base-v2"
    assert model_version("file:///srv/models/model") == "models"
