"""The telemetry event contract and the streaming reader: schema in step with the docs,
malformed lines turned into rejects with file, line and a reason naming the field."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rewardops_trainer.contract.events import TelemetryEvent, event_json_schema
from rewardops_trainer.storage import open_store
from rewardops_trainer.telemetry.events_reader import (
    MAX_LINE_BYTES,
    Reject,
    read_events,
    telemetry_objects,
)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "timestamp": "2026-01-02T03:04:05Z",
        "session_id": "s-1",
        "user_id_hash": "u-hash",
        "consent": True,
        "prompt_id": "p-1",
        "prompt": "How do I reset my password?",
        "response_id": "r-1",
        "response": "Open Settings > Security.",
        "model_version": "m-1",
    }
    base.update(overrides)
    return base


def test_docs_schema_matches_the_model(repo_root: Path) -> None:
    text = (repo_root / "docs" / "telemetry.md").read_text()
    block = re.search(
        r"<!-- event-schema:start -->\s*```json\n(.*?)```\s*<!-- event-schema:end -->", text, re.S
    )
    assert block is not None, "docs/telemetry.md lost its event-schema block"
    assert json.loads(block.group(1)) == event_json_schema(), (
        "regenerate with: python -m rewardops_trainer.contract.events"
    )


def test_docs_table_lists_every_field(repo_root: Path) -> None:
    text = (repo_root / "docs" / "telemetry.md").read_text()
    for name in TelemetryEvent.model_fields:
        assert f"| `{name}` |" in text, name


def test_minimal_event_is_valid_and_feedback_defaults_off() -> None:
    parsed = TelemetryEvent.model_validate_json(json.dumps(event()))
    assert parsed.schema_version == 1
    assert parsed.thumb is None
    assert parsed.comparison is None
    assert not (parsed.regenerated)
    assert not (parsed.accepted)
    assert not (parsed.copied)
    assert not (parsed.reported_wrong)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"thumbs": "up"}, "thumbs"),
        ({"timestamp": "2026-01-02T03:04:05"}, "timestamp"),
        ({"rating": 6}, "rating"),
        ({"thumb": "sideways"}, "thumb"),
        ({"dwell_ms": -1}, "dwell_ms"),
        ({"schema_version": 2}, "schema_version"),
        (
            {"comparison": {"other_response_id": "r", "other_response": "x", "choice": "both"}},
            "comparison",
        ),
    ],
)
def test_bad_fields_are_rejected_by_name(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        TelemetryEvent.model_validate_json(json.dumps(event(**overrides)))
    assert field in str(error.value)


def write_lines(path: Path, lines: list[bytes]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def test_reader_keeps_going_past_bad_lines(tmp_path: Path) -> None:
    good = json.dumps(event()).encode()
    write_lines(
        tmp_path / "a.jsonl",
        [
            good,
            b"{not json",
            b"",
            json.dumps(event(rating="five")).encode(),
            b"\xff\xfe garbage",
            json.dumps({k: v for k, v in event().items() if k != "prompt_id"}).encode(),
            b"x" * (MAX_LINE_BYTES + 1),
            good,
        ],
    )
    results = list(read_events(open_store(str(tmp_path)), "a.jsonl"))
    rejects = [item for _, item in results if isinstance(item, Reject)]
    events = [item for _, item in results if isinstance(item, TelemetryEvent)]
    assert len(events) == 2
    assert [(r.line, r.kind) for r in rejects] == [
        (2, "invalid_json"),
        (4, "invalid_event"),
        (5, "invalid_json"),
        (6, "invalid_event"),
        (7, "line_too_long"),
    ]
    assert all(r.file == "a.jsonl" for r in rejects)
    assert "'rating'" in rejects[1].reason
    assert "UTF-8" in rejects[2].reason
    assert "'prompt_id'" in rejects[3].reason
    assert "required" in rejects[3].reason
    assert [number for number, item in results if isinstance(item, TelemetryEvent)] == [1, 8]


def test_reader_streams_gzip_and_rejects_a_truncated_tail(tmp_path: Path) -> None:
    lines = [json.dumps(event(event_id=f"e-{i}")).encode() for i in range(200)]
    write_lines(tmp_path / "b.jsonl.gz", lines)
    store = open_store(str(tmp_path))
    assert sum(1 for _ in read_events(store, "b.jsonl.gz")) == 200

    whole = (tmp_path / "b.jsonl.gz").read_bytes()
    (tmp_path / "b.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    results = [item for _, item in read_events(store, "b.jsonl.gz")]
    assert isinstance(results[-1], Reject)
    assert results[-1].kind == "corrupt_object"
    assert all(isinstance(item, TelemetryEvent) for item in results[:-1])


def test_only_jsonl_objects_are_telemetry(tmp_path: Path) -> None:
    for name in ("a.jsonl", "b.jsonl.gz", "notes.txt", "c.json", "sub/d.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    keys = [info.key for info in telemetry_objects(open_store(str(tmp_path)))]
    assert keys == ["a.jsonl", "b.jsonl.gz", "sub/d.jsonl"]
