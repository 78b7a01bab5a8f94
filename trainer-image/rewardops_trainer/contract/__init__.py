"""The trainer's torch-free interface: what the operator hands in and reads back.

The operator imports this package, so nothing here may import torch or transformers.
"""

from rewardops_trainer.contract.exit_codes import ExitCode
from rewardops_trainer.contract.feedback import (
    FEEDBACK_CONFIG_ENV,
    FeedbackConfig,
    FeedbackEvaluation,
)
from rewardops_trainer.contract.report import (
    DataCounts,
    EvalMetrics,
    Lineage,
    ModelEvaluation,
    Report,
    SliceMetrics,
    TrainingSummary,
)
from rewardops_trainer.contract.run_config import (
    RUN_CONFIG_ENV,
    Hyperparameters,
    LoraSettings,
    PairSettings,
    RunConfig,
    StorageSettings,
)

__all__ = [
    "FEEDBACK_CONFIG_ENV",
    "RUN_CONFIG_ENV",
    "DataCounts",
    "EvalMetrics",
    "ExitCode",
    "FeedbackConfig",
    "FeedbackEvaluation",
    "Hyperparameters",
    "Lineage",
    "LoraSettings",
    "ModelEvaluation",
    "PairSettings",
    "Report",
    "RunConfig",
    "SliceMetrics",
    "StorageSettings",
    "TrainingSummary",
]
