"""What the API server does with a structural schema on write: prune unknown fields.

The stand-in API server does not prune, so tests that must prove status survives a real API
server run the object through this first.
"""

from __future__ import annotations

from typing import Any


def prune(value: Any, schema: dict[str, Any]) -> Any:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict) and schema.get("type") == "object":
        if "properties" in schema:
            return {
                key: prune(item, schema["properties"][key])
                for key, item in value.items()
                if key in schema["properties"]
            }
        if "additionalProperties" in schema:
            return {key: prune(item, schema["additionalProperties"]) for key, item in value.items()}
        return {}
    if isinstance(value, list) and schema.get("type") == "array":
        return [prune(item, schema["items"]) for item in value]
    return value


def untyped_nodes(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of nodes that break the structural rules (no type, $ref, anyOf, oneOf...)."""
    bad = []
    if "type" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        bad.append(path or "<root>")
    bad.extend(
        f"{path}:{key}" for key in ("$ref", "anyOf", "oneOf", "allOf", "not") if key in schema
    )
    for name, child in schema.get("properties", {}).items():
        bad.extend(untyped_nodes(child, f"{path}.{name}"))
    if isinstance(schema.get("additionalProperties"), dict):
        bad.extend(untyped_nodes(schema["additionalProperties"], f"{path}.*"))
    if "items" in schema:
        bad.extend(untyped_nodes(schema["items"], f"{path}[]"))
    return bad
