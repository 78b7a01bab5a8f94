"""Check RewardModelUpdate documents the way the API server and the operator will.

Two passes, each problem named by file, document and field path: the CRD's own
openAPIV3Schema (what `kubectl apply` would refuse) and the models' semantic rules (what the
operator would refuse: window order, fraction ranges and the like).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import ValidationError

from rewardops_operator.api.crd import open_api_schema
from rewardops_operator.api.models import KIND, RewardModelUpdate


@dataclass(frozen=True)
class Problem:
    source: str
    document: int
    name: str | None
    path: str
    message: str

    def __str__(self) -> str:
        who = f"document {self.document}" + (f" ({self.name})" if self.name else "")
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}: {who}: {where}{self.message}"


def _as_json_schema(node: Any) -> Any:
    """The structural schema in plain JSON Schema: `nullable` becomes a null type."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: _as_json_schema(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("type") == "object" and "properties" in node:
        out["additionalProperties"] = False
    return out


@functools.cache
def schema_validator() -> Draft202012Validator:
    """A validator for whole RewardModelUpdate objects against the generated CRD schema."""
    schema = _as_json_schema(open_api_schema())
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _json_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def check_object(obj: Any, source: str, document: int) -> list[Problem]:
    """Every problem of one parsed document; an empty list means it is a valid update."""
    if not isinstance(obj, dict):
        return [Problem(source, document, None, "", "not a mapping")]
    name = (
        (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    )
    problems = [
        Problem(source, document, name, _json_path(error.absolute_path), error.message)
        for error in sorted(schema_validator().iter_errors(obj), key=lambda e: list(e.path))
    ]
    if problems:
        return problems
    try:
        RewardModelUpdate.model_validate(obj)
    except ValidationError as error:
        for detail in error.errors():
            path = _json_path(detail["loc"])
            message = detail["msg"].removeprefix("Value error, ")
            problems.append(Problem(source, document, name, path, message))
    return problems


def iter_documents(text: str) -> Iterator[tuple[int, Any]]:
    """(1-based document number, parsed document) for each non-empty YAML document."""
    for number, document in enumerate(yaml.safe_load_all(text), start=1):
        if document is not None:
            yield number, document


def is_update(document: Any) -> bool:
    """Updates, and documents that look like one with a missing kind; not other YAML."""
    if not isinstance(document, dict):
        return True
    if "kind" in document:
        return bool(document["kind"] == KIND)
    return "spec" in document or "apiVersion" in document


def check_file(path: Path) -> tuple[int, list[Problem]]:
    """How many RewardModelUpdates the file holds, and their problems.

    Documents of other kinds are skipped, so a GitOps folder can be checked as it is.
    """
    source = str(path)
    try:
        documents = list(iter_documents(path.read_text()))
    except OSError as error:
        return 0, [Problem(source, 0, None, "", f"cannot read: {error.strerror}")]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return 0, [Problem(source, 0, None, "", f"invalid YAML: {where}{error}")]
    updates = 0
    problems: list[Problem] = []
    for number, document in documents:
        if not is_update(document):
            continue
        updates += 1
        problems.extend(check_object(document, source, number))
    return updates, problems
