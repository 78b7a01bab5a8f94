"""Operator-wide defaults, read once from the environment (the Helm chart sets them).

A RewardModelUpdate's own fields win over these; these fill what the resource leaves out.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field


class OperatorSettings(BaseModel):
    trainer_image: str = Field(
        default="ghcr.io/rewardops/trainer:0.1.0", description="REWARDOPS_TRAINER_IMAGE"
    )
    storage_endpoint: str | None = Field(default=None, description="REWARDOPS_STORAGE_ENDPOINT")
    storage_secure: bool = Field(default=True, description="REWARDOPS_STORAGE_SECURE")
    storage_secret: str | None = Field(
        default=None, description="REWARDOPS_STORAGE_SECRET: default credentials Secret name"
    )
    job_ttl_seconds: int = Field(default=86400, description="REWARDOPS_JOB_TTL_SECONDS")
    poll_seconds: float = Field(
        default=30.0, description="REWARDOPS_POLL_SECONDS: safety-net timer between watches"
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        env = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"REWARDOPS_{name.upper()}"
            if key in env:
                values[name] = env[key]
        return cls.model_validate(values)
