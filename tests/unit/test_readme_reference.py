"""The README's resource table is kept in step with the API models: every spec field is there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rewardops_operator.api.models import RewardModelUpdateSpec


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _is_list(annotation: Any) -> bool:
    if getattr(annotation, "__origin__", None) is list:
        return True
    return any(_is_list(arg) for arg in getattr(annotation, "__args__", ()))


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of the leaf fields (lists of objects as ``name[].field``)."""
    paths = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        nested = _model_of(info.annotation)
        if nested is None or nested.__name__ in ("Toleration", "ResourceRequirements"):
            paths.append(path)
        else:
            paths += field_paths(nested, path + ("[]." if _is_list(info.annotation) else "."))
    return paths


def table_rows(readme: str) -> list[str]:
    return [line for line in readme.splitlines() if line.startswith("| `")]


def _names(row: str) -> list[str]:
    """The field names of a row's first column; ``.x`` is a sibling of the first name."""
    names = re.findall(r"`([^`]+)`", row.split("|")[1])
    parent = names[0].rsplit(".", 1)[0] if names else ""
    return [parent + name if name.startswith(".") else name for name in names]


def is_documented(path: str, rows: list[str]) -> bool:
    """Named in a row, under a ``parent.*`` row, or under a row that names its next segment."""
    for row in rows:
        for name in _names(row):
            if path == name:
                return True
            if name.endswith(".*") and path.startswith(name.removesuffix("*")):
                return True
            for joint in (".", "[]."):
                if path.startswith(name + joint):
                    segment = path.removeprefix(name + joint).split(".")[0]
                    if re.search(rf"`\.?{re.escape(segment)}[`.(]", row):
                        return True
    return False


def test_every_spec_field_is_in_the_readme_table(repo_root: Path) -> None:
    rows = table_rows((repo_root / "README.md").read_text())
    missing = [path for path in field_paths(RewardModelUpdateSpec) if not is_documented(path, rows)]
    assert missing == [], f"README's resource table lacks: {missing}"


def test_the_check_can_fail() -> None:
    assert not is_documented("training.gpus", ["| `serving.deployment` | required | x |"])
    assert is_documented("training.pairs.minPairs", ["| `training.pairs.*` | see | x |"])
