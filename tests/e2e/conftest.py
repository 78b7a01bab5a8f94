from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.s3server import free_port


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rewardops_operator.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def rewardops(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the `rewardops` command in a fresh directory, as a person would."""
    return lambda *args, timeout=600: _run([str(a) for a in args], tmp_path, timeout)


@pytest.fixture
def port() -> int:
    return free_port()
