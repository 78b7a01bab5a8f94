"""values.yaml, values.schema.json and the README's values table agree with each other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.chart import values_doc
from tests.chart.rendering import CHART, render

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
#: Kubernetes affinity terms are passed through whole; the API server checks them (and the
#: strict validation of rendered manifests in test_chart_render.py).
OPEN_OBJECTS_UNDER = ("affinity.",)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = SCHEMA
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(target)


def _schema_nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    node = _resolve(node)
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{name}".lstrip("."))
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}.*".lstrip("."))
    if isinstance(node.get("items"), dict):
        yield from _schema_nodes(node["items"], f"{path}[]")


def _value_paths(node: Any, path: str = "", leaves_only: bool = False) -> Iterator[str]:
    if isinstance(node, dict):
        for key, child in node.items():
            child_path = f"{path}.{key}".lstrip(".")
            if not (leaves_only and isinstance(child, dict) and child):
                yield child_path
            yield from _value_paths(child, child_path, leaves_only)


def _schema_allows(path: str) -> bool:
    node = _resolve(SCHEMA)
    for part in path.split("."):
        if part in node.get("properties", {}):
            node = _resolve(node["properties"][part])
        elif isinstance(node.get("additionalProperties"), dict):
            node = _resolve(node["additionalProperties"])
        else:
            return False
    return True


def test_schema_is_closed_and_typed_everywhere() -> None:
    for path, node in _schema_nodes(SCHEMA, ""):
        assert "type" in node, f"{path or '<root>'}: no type"
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if "object" not in types or path.startswith(OPEN_OBJECTS_UNDER):
            continue
        closed = node.get("additionalProperties")
        if "properties" in node:
            assert closed is False, f"{path or '<root>'}: unknown keys must be rejected"
        else:
            assert isinstance(closed, dict), f"{path}: a map needs a schema for its values"


def test_every_value_has_a_schema() -> None:
    missing = [p for p in _value_paths(VALUES) if not _schema_allows(p)]
    assert missing == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 2}, "additional properties 'replicaCount' not allowed"),
        ({"image": {"tagg": "1.0"}}, "additional properties 'tagg' not allowed"),
        ({"metrics": {"port": "9090"}}, "/metrics/port"),
        ({"crds": {"keep": "yes"}}, "/crds/keep"),
        ({"watchNamespaces": ["ML_Serving"]}, "/watchNamespaces/0"),
        ({"operator": {"jobTtlSeconds": -1}}, "/operator/jobTtlSeconds"),
        ({"operator": {"trainerImage": "ghcr.io/x/trainer:latest"}}, "/operator/trainerImage"),
        ({"operator": {"storage": {"endpoint": "https://minio:9000"}}}, "/operator/storage"),
        ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
        ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
        ({"tolerations": [{"key": "a", "efect": "NoSchedule"}]}, "/tolerations/0"),
        ({"image": {"digest": "abc"}}, "/image/digest"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match="schema") as refused:
            chart.render(values, name="rewardops", namespace="default")
        chart.validate_schema({})  # the defaults themselves pass
    assert complaint in str(refused.value)


def test_every_value_is_documented_in_the_readme() -> None:
    docs = values_doc.documented_values((CHART / "values.yaml").read_text())
    documented = {d.path for d in docs}
    readme = (CHART / "README.md").read_text()
    for path in _value_paths(VALUES, leaves_only=True):
        prefixes = {".".join(path.split(".")[:i]) for i in range(1, path.count(".") + 2)}
        assert prefixes & documented, f"values.yaml: {path} has no `# --` comment"
    for path in documented:
        assert f"| `{path}` |" in readme, f"README.md: no row for {path}"


def test_readme_table_is_generated_from_values() -> None:
    readme = (CHART / "README.md").read_text()
    docs = values_doc.documented_values((CHART / "values.yaml").read_text())
    assert readme == values_doc.readme_with_table(readme, docs), (
        "charts/rewardops/README.md is stale: python -m tests.chart.values_doc --write"
    )


def test_values_doc_reads_defaults_and_continuations() -> None:
    text = "a:\n  # -- first line\n  # second line\n  b: 3\n# -- a map\nc: {x: y}\nd: 1\n"
    docs = values_doc.documented_values(text)
    assert [(d.path, d.type, d.default, d.description) for d in docs] == [
        ("a.b", "int", "3", "first line second line"),
        ("c", "object", '{"x":"y"}', "a map"),
    ]


def test_chart_defaults_render() -> None:
    assert render(), "the default values render nothing"
