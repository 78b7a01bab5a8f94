"""The split: by prompt id, stable, close to the configured fraction; partitions in range."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from rewardops_trainer.telemetry.split import partition_of, split_of, split_position


def test_split_is_the_documented_hash_and_pinned() -> None:
    # docs/telemetry.md promises this formula; changing it would silently move prompts between
    # train and validation from one run to the next.
    digest = hashlib.sha256(b"rewardops-split\x00prompt-a").digest()
    assert split_position("prompt-a") == int.from_bytes(digest[:8], "big") / 2**64
    assert split_position("prompt-a") == 0.17549308148686799
    assert split_of("prompt-a", 0.17) == "train"
    assert split_of("prompt-a", 0.18) == "validation"


@given(st.text(min_size=1, max_size=40), st.floats(0.01, 0.99))
def test_split_depends_on_the_prompt_only_and_is_monotone(prompt_id: str, fraction: float) -> None:
    position = split_position(prompt_id)
    assert 0.0 <= position < 1.0
    assert split_of(prompt_id, fraction) == ("validation" if position < fraction else "train")
    # Raising the fraction only ever moves prompts from train to validation.
    if split_of(prompt_id, fraction) == "validation":
        assert split_of(prompt_id, min(0.999, fraction + 0.1)) == "validation"


def test_split_fraction_is_close_to_the_setting() -> None:
    ids = [f"p-{i}" for i in range(20_000)]
    share = sum(split_of(i, 0.2) == "validation" for i in ids) / len(ids)
    assert abs(share - 0.2) < 0.015


@given(st.text(max_size=40), st.integers(1, 1024))
def test_partition_is_in_range(prompt_id: str, partitions: int) -> None:
    assert 0 <= partition_of(prompt_id, partitions) < partitions
