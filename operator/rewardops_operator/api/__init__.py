"""The RewardModelUpdate API: pydantic models, conditions and CRD generation."""
