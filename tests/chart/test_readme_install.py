"""The README's `helm install` sets values the chart really has."""

from __future__ import annotations

import re
from pathlib import Path

import yaml


def test_readme_helm_values_exist(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    keys = re.findall(r"--set ([\w.]+)=", readme)
    assert keys, "the README shows no --set"
    values = yaml.safe_load((repo_root / "charts" / "rewardops" / "values.yaml").read_text())
    for key in keys:
        node = values
        for part in key.split("."):
            assert isinstance(node, dict), key
            assert part in node, f"README sets {key}, which values.yaml lacks"
            node = node[part]
