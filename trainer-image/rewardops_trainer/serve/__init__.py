"""The reference reward-model server: ``rewardops-trainer serve`` (see docs/serving.md)."""
