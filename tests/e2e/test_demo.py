"""The README's first command, in its quick form: three updates, three outcomes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_quick_demo_promotes_rejects_and_rolls_back(
    rewardops: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, port: int
) -> None:
    directory = tmp_path / "demo"
    result = rewardops("demo", "--quick", "--dir", directory, "--serve-port", port, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr

    def phase(name: str) -> str:
        status = yaml.safe_load((directory / "run" / "status" / f"{name}.yaml").read_text())
        return str(status["status"]["phase"])

    assert phase("improve") == "Succeeded"
    assert phase("poisoned") == "Rejected"
    assert phase("broken-artifact") == "RolledBack"

    improve = yaml.safe_load((directory / "run" / "status" / "improve.yaml").read_text())["status"]
    broken = yaml.safe_load((directory / "run" / "status" / "broken-artifact.yaml").read_text())
    # The rollback restored exactly the model the first update promoted.
    assert broken["status"]["servedModel"] == improve["servedModel"]

    runs = directory / "store" / "models" / "runs"
    for run in runs.iterdir():
        for artifact in ("report.json", "manifest.json", "rejected.jsonl", "pairs/train.jsonl"):
            assert (run / artifact).is_file(), f"{run.name} lacks {artifact}"
    rejected = [
        json.loads(line)
        for run in runs.iterdir()
        for line in (run / "rejected.jsonl").read_text().splitlines()
    ]
    assert rejected, "the seeded malformed lines are kept aside"
    pairs = "".join(p.read_text() for p in runs.glob("*/pairs/*.jsonl"))
    assert "@example" not in pairs, "e-mail addresses are redacted before anything is written"
    assert "summary" in result.stdout
