"""`rewardops run`: exit codes by outcome, on the examples and on broken input."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from rewardops_operator.local.runner import EXIT_CODES
from rewardops_trainer.storage import open_store
from rewardops_trainer.synthetic import generate_telemetry

Rewardops = Callable[..., subprocess.CompletedProcess[str]]


def test_invalid_file_exits_1_naming_the_field(rewardops: Rewardops, repo_root: Path) -> None:
    result = rewardops("run", repo_root / "examples" / "broken" / "negative-gpus.yaml")
    assert result.returncode == 1
    assert "spec.training.gpus" in result.stderr


def _tiny_model(tmp_path: Path) -> Path:
    target = tmp_path / "store" / "models" / "base"
    subprocess.run(
        [sys.executable, "-m", "rewardops_trainer", "init-model", "--tiny", "--out", str(target)],
        check=True,
        capture_output=True,
    )
    return target


def _status(work_dir: Path, name: str) -> dict[str, object]:
    document = yaml.safe_load((work_dir / "status" / f"{name}.yaml").read_text())
    return dict(document["status"])


@pytest.mark.slow
def test_the_minimal_example_runs_to_an_outcome_and_exits_by_it(
    rewardops: Rewardops, repo_root: Path, tmp_path: Path, port: int
) -> None:
    _tiny_model(tmp_path)
    now = datetime.now(UTC)
    generate_telemetry(
        open_store((tmp_path / "store" / "telemetry" / "assistant").as_uri()),
        events=1200,
        seed=5,
        start=now - timedelta(days=6),
        end=now - timedelta(hours=1),
    )
    result = rewardops(
        "run", repo_root / "examples" / "minimal.yaml",
        "--store", tmp_path / "store",
        "--served-model", "s3://models/base",
        "--work-dir", tmp_path / "work",
        "--serve-port", port,
    )  # fmt: skip
    status = _status(tmp_path / "work", "weekly-refresh")
    phase = str(status["phase"])
    assert phase in {"Succeeded", "Rejected"}, result.stdout + result.stderr
    assert result.returncode == EXIT_CODES[phase], result.stdout + result.stderr  # type: ignore[index]
    assert status["gates"], "the gate results are in the saved status"
    assert "gates (held-out accuracy" in result.stdout


@pytest.mark.slow
def test_a_failing_trainer_ends_failed_with_exit_12(
    rewardops: Rewardops, tmp_path: Path, port: int
) -> None:
    _tiny_model(tmp_path)
    update = {
        "apiVersion": "rewardops.dev/v1alpha1",
        "kind": "RewardModelUpdate",
        "metadata": {"name": "no-telemetry"},
        "spec": {
            "serving": {"deployment": "scorer"},
            "telemetry": {"uri": "s3://telemetry/empty/"},
            "output": {"uri": "s3://models/runs/"},
            "training": {"gpus": 0},
        },
    }
    path = tmp_path / "update.yaml"
    path.write_text(yaml.safe_dump(update))
    result = rewardops(
        "run", path,
        "--store", tmp_path / "store",
        "--served-model", "s3://models/base",
        "--work-dir", tmp_path / "work",
        "--serve-port", port,
    )  # fmt: skip
    assert result.returncode == 12, result.stdout + result.stderr
    status = _status(tmp_path / "work", "no-telemetry")
    assert status["phase"] == "Failed"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[attr-defined]
    assert ready["reason"] == "JobFailed"
    assert "no telemetry objects" in ready["message"]
    assert not ready["message"].startswith("{"), "the trainer's error, not its log lines"
    assert str(status["servedModel"]).endswith("/models/base"), "production is untouched"
