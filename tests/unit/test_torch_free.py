"""The operator image has no torch: prove the operator's imports never reach it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

BLOCKER = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "peft", "safetensors"):
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
import importlib
for module in sys.argv[1:]:
    importlib.import_module(module)
print("imported", len(sys.argv) - 1)
"""


def operator_modules(repo_root: Path) -> list[str]:
    package = repo_root / "operator" / "rewardops_operator"
    names = ["rewardops_operator"]
    for info in pkgutil.walk_packages([str(package)], prefix="rewardops_operator."):
        names.append(info.name)
    return names


def test_operator_and_trainer_contract_import_without_torch(repo_root: Path) -> None:
    modules = [
        *operator_modules(repo_root),
        "rewardops_trainer.contract",
        "rewardops_trainer.storage",
    ]
    assert "rewardops_operator.api.models" in modules
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, *modules], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"imported {len(modules)}" in result.stdout


def test_the_blocker_really_blocks() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, "torch"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "blocked: torch" in result.stderr
