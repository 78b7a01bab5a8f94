"""Request limits and parsing: every bad request becomes a :class:`RequestError` naming the field.

The handlers call these before anything reaches the model, so a malformed or oversized request
costs one JSON decode and never touches the batcher.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_responses: int = 64
    max_chars: int = 20_000

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_responses", "max_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class RequestError(Exception):
    """A client error: HTTP ``status``, the offending ``field`` (a JSON path) and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, "body", "not UTF-8 text") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(
            400, "body", f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(value, dict):
        raise RequestError(400, "body", f"expected a JSON object, got {_kind(value)}")
    return value


def require_text(body: dict[str, Any], field: str, limits: Limits, *, path: str = "") -> str:
    value = body.get(field)
    name = path or field
    if value is None:
        raise RequestError(422, name, "required")
    return check_text(value, name, limits)


def check_text(value: object, name: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise RequestError(422, name, f"expected a string, got {_kind(value)}")
    if len(value) > limits.max_chars:
        raise RequestError(
            413, name, f"{len(value)} characters is over the limit of {limits.max_chars}"
        )
    return value


def require_texts(body: dict[str, Any], field: str, limits: Limits) -> list[str]:
    value = body.get(field)
    if value is None:
        raise RequestError(422, field, "required")
    if not isinstance(value, list):
        raise RequestError(422, field, f"expected a list of strings, got {_kind(value)}")
    if not value:
        raise RequestError(422, field, "must not be empty")
    if len(value) > limits.max_responses:
        raise RequestError(
            413, field, f"{len(value)} items is over the limit of {limits.max_responses}"
        )
    return [check_text(item, f"{field}[{index}]", limits) for index, item in enumerate(value)]


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    """Unknown fields are an error: a typo such as ``respones`` must not pass silently."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(
            422, unknown[0], f"unknown field; this endpoint takes {', '.join(sorted(allowed))}"
        )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )
