"""rewardops operator: reconciles RewardModelUpdate resources."""

__version__ = "0.1.0"
