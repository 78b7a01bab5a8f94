"""Telemetry event v1: one JSON object per line of ``.jsonl`` / ``.jsonl.gz``.

Production loggers write these, so the wire form is plain snake_case JSON with flat, optional
feedback fields: a logger fills what it knows and leaves the rest out. Unknown fields are
rejected (``extra="forbid"``) so that a misspelt feedback field is a counted reject instead of a
silently lost signal; new fields come with a new ``schema_version``. Documented, with the JSON
Schema, in docs/telemetry.md. Torch-free: the operator may import it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

EVENT_SCHEMA_VERSION = 1


class EventModel(BaseModel):
    # Interning every short string value costs more than it saves: ids are mostly unique.
    model_config = ConfigDict(extra="forbid", frozen=True, cache_strings="keys")


class Comparison(EventModel):
    """An A-vs-B choice: the event's response was shown beside ``other_response``."""

    other_response_id: str = Field(min_length=1, max_length=256)
    other_response: str
    choice: Literal["this", "other"] = Field(description="which response the user preferred")


class TelemetryEvent(EventModel):
    """One logged interaction: a prompt, the response shown, and the feedback it got."""

    schema_version: Literal[1] = 1
    event_id: str = Field(min_length=1, max_length=256)
    timestamp: AwareDatetime = Field(description="RFC 3339 with a UTC offset")
    session_id: str = Field(min_length=1, max_length=256)
    user_id_hash: str = Field(
        min_length=1,
        max_length=256,
        description="a salted hash of the user id, never the id itself; never written out",
    )
    consent: bool = Field(description="the user agreed to training use; false drops the event")
    prompt_id: str = Field(min_length=1, max_length=256, description="stable id of the prompt")
    prompt: str
    response_id: str = Field(min_length=1, max_length=256)
    response: str
    model_version: str = Field(min_length=1, max_length=256)
    # Explicit feedback.
    thumb: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    comparison: Comparison | None = None
    correction: str | None = Field(default=None, description="the user's corrected response")
    # Regeneration: the user asked for another answer to this one / kept this one.
    regenerated: bool = False
    accepted: bool = False
    # Implicit feedback.
    dwell_ms: int | None = Field(default=None, ge=0, description="time spent on the response")
    copied: bool = False
    reported_wrong: bool = Field(default=False, description="reported as wrong (hallucination)")


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of one event line, as published in docs/telemetry.md."""
    return TelemetryEvent.model_json_schema()


if __name__ == "__main__":
    # Regenerates the schema block of docs/telemetry.md.
    print(json.dumps(event_json_schema(), indent=2))
