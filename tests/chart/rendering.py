"""Render the chart with the real Helm engine (helm-python-sdk, Helm v4) into parsed objects."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rewardops"
CI_VALUES = sorted(CHART.glob("ci/*.yaml"))
RELEASE = "rewardops"
NAMESPACE = "rewardops-system"

Obj = dict[str, Any]


def ci_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text()) or {}
    assert isinstance(loaded, dict), f"{path}: values must be a mapping"
    return loaded


@cache
def _render_json(values_json: str) -> str:
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE)
    objects: list[Obj] = []
    for template, text in sorted(rendered.items()):
        if not template.endswith(".yaml"):
            continue
        for document in yaml.safe_load_all(text):
            if document is not None:
                document.setdefault("metadata", {})
                objects.append(document)
    return json.dumps(objects)


def render(values: dict[str, Any] | None = None) -> list[Obj]:
    """Every object the chart renders with these values (a fresh copy each call)."""
    objects: list[Obj] = json.loads(_render_json(json.dumps(values or {}, sort_keys=True)))
    return copy.deepcopy(objects)


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[Obj], kind: str) -> Obj:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
