"""rewardops trainer: telemetry to preference pairs, reward-model training, evaluation, serving."""

__version__ = "0.1.0"
