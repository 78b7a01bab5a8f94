"""Generate the RewardModelUpdate CRD from the pydantic models.

pydantic emits JSON Schema with $refs, anyOf-null for optionals and titles; the Kubernetes API
server wants a structural OpenAPI v3 schema: every node typed, no $ref, `nullable` instead of
null types. This module does that translation and nothing else, so the CRD can never drift from
the models.
"""

from __future__ import annotations

from typing import Any

import yaml

from rewardops_operator.api.models import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    RewardModelUpdateSpec,
    RewardModelUpdateStatus,
)

JSONSchema = dict[str, Any]

#: JSON Schema keywords the structural schema keeps as they are.
_KEPT = (
    "description",
    "default",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
)

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Candidate",
        "type": "string",
        "description": "candidate held-out accuracy",
        "jsonPath": ".status.candidate.heldOutAccuracy",
    },
    {
        "name": "Served",
        "type": "string",
        "description": "held-out accuracy of the model in production, on the same pairs",
        "jsonPath": ".status.baseline.heldOutAccuracy",
    },
    {"name": "Model", "type": "string", "jsonPath": ".status.servedModel"},
    {"name": "Run", "type": "string", "jsonPath": ".status.runId", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

#: Checks the API server runs itself (CEL), beside the ones `rewardops validate` runs.
_SPEC_RULES: list[dict[str, str]] = [
    {
        "rule": "!has(self.telemetry.since) || !has(self.telemetry.until)"
        " || self.telemetry.since < self.telemetry.until",
        "message": "telemetry.until must be after telemetry.since",
    }
]


def _resolve(node: JSONSchema, defs: dict[str, JSONSchema]) -> JSONSchema:
    ref = node.get("$ref")
    if ref is None:
        return node
    resolved = dict(defs[ref.rsplit("/", 1)[-1]])
    resolved.update({k: v for k, v in node.items() if k != "$ref"})
    return resolved


def structural(node: JSONSchema, defs: dict[str, JSONSchema]) -> JSONSchema:
    """One pydantic JSON Schema node as a structural schema node."""
    node = _resolve(node, defs)
    if "anyOf" in node:
        options = [_resolve(o, defs) for o in node["anyOf"]]
        typed = [o for o in options if o.get("type") != "null"]
        if len(typed) != 1:
            raise ValueError(f"cannot express a union of {len(typed)} types structurally: {node}")
        merged = {**typed[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        optional = structural(merged, defs)
        if len(typed) < len(options):
            optional["nullable"] = True
        if optional.get("default", 0) is None:
            del optional["default"]
        return optional
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    if "enum" in node and "type" not in node:
        node = {**node, "type": "string"}

    out: JSONSchema = {"type": node["type"]}
    out.update({key: node[key] for key in _KEPT if key in node})
    if node["type"] == "object":
        if "properties" in node:
            out["properties"] = {
                name: structural(child, defs) for name, child in node["properties"].items()
            }
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = structural(node["additionalProperties"], defs)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif node["type"] == "array":
        out["items"] = structural(node["items"], defs)
    return out


def model_schema(model: type[Any]) -> JSONSchema:
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    defs = schema.pop("$defs", {})
    return structural(schema, defs)


def open_api_schema() -> JSONSchema:
    spec = model_schema(RewardModelUpdateSpec)
    spec["x-kubernetes-validations"] = _SPEC_RULES
    return {
        "type": "object",
        "description": "A request to retrain the reward model behind a serving Deployment "
        "from fresh telemetry, gate the candidate and promote it.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": model_schema(RewardModelUpdateStatus),
        },
    }


def custom_resource_definition() -> JSONSchema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["rewardops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": open_api_schema()},
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared lists out in full: anchors in a CRD confuse people and some tools."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    header = "# Generated by `rewardops crd` from the API models; do not edit.\n"
    body = yaml.dump(
        custom_resource_definition(), Dumper=_NoAliasDumper, sort_keys=False, width=100
    )
    return header + body
