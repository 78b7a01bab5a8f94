"""Deterministic assignment of prompts to the train/validation split and to spill partitions.

Both depend on the prompt id alone, so every event of a prompt lands in the same partition and
every pair of a prompt in the same split: no prompt is in both train and validation, and the
split is stable across runs, machines and Python versions (no ``hash()``, whose seed varies).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Literal

Split = Literal["train", "validation"]


def split_position(prompt_id: str) -> float:
    """A uniform number in [0, 1) from SHA-256 of the prompt id."""
    digest = hashlib.sha256(b"rewardops-split\x00" + prompt_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(prompt_id: str, validation_fraction: float) -> Split:
    return "validation" if split_position(prompt_id) < validation_fraction else "train"


def partition_of(prompt_id: str, partitions: int) -> int:
    """Spill partition of a prompt; CRC-32 because it runs once per event and need not be secure."""
    return zlib.crc32(prompt_id.encode()) % partitions
