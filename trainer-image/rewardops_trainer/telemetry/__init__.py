"""Telemetry to preference pairs: reading, redaction, rules, split and lineage."""

from rewardops_trainer.telemetry.pipeline import PairsResult, build_pairs

__all__ = ["PairsResult", "build_pairs"]
