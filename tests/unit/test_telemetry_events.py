"""The telemetry event contract and the streaming reader: schema in step with the docs,
malformed lines turned into rejects with file, line and a reason naming the field, and the
fast msgspec record in step with the pydantic model (same fields, same verdicts)."""

from __future__ import annotations

import gzip
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rewardops_trainer.contract.events import TelemetryEvent, event_json_schema
from rewardops_trainer.storage import open_store
from rewardops_trainer.telemetry.events_reader import (
    MAX_LINE_BYTES,
    ComparisonRecord,
    EventRecord,
    Reject,
    check_line,
    decode_event,
    model_timestamp,
    read_events,
    record_of,
    reject_of,
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
    results = [
        (number, item) for number, _, item in read_events(open_store(str(tmp_path)), "a.jsonl")
    ]
    rejects = [item for _, item in results if isinstance(item, Reject)]
    events = [item for _, item in results if isinstance(item, EventRecord)]
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
    assert [number for number, item in results if isinstance(item, EventRecord)] == [1, 8]


def test_reader_streams_gzip_and_rejects_a_truncated_tail(tmp_path: Path) -> None:
    lines = [json.dumps(event(event_id=f"e-{i}")).encode() for i in range(200)]
    write_lines(tmp_path / "b.jsonl.gz", lines)
    store = open_store(str(tmp_path))
    assert sum(1 for _ in read_events(store, "b.jsonl.gz")) == 200

    whole = (tmp_path / "b.jsonl.gz").read_bytes()
    (tmp_path / "b.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    results = [item for _, _, item in read_events(store, "b.jsonl.gz")]
    assert isinstance(results[-1], Reject)
    assert results[-1].kind == "corrupt_object"
    assert all(isinstance(item, EventRecord) for item in results[:-1])


def test_bytes_that_are_not_utf8_inside_a_string_are_a_reject_not_a_crash(
    tmp_path: Path,
) -> None:
    # msgspec raises UnicodeDecodeError here, not a DecodeError.
    write_lines(
        tmp_path / "a.jsonl",
        [
            json.dumps(event()).replace("How do I", "How \\u00e9").encode(),
            json.dumps(event()).encode().replace(b"How do I", b"How \xff\xfe"),
            b'{"event_id\xff": 1}',
        ],
    )
    results = [item for _, _, item in read_events(open_store(str(tmp_path)), "a.jsonl")]
    assert isinstance(results[0], EventRecord)
    assert [(r.line, r.kind, r.reason) for r in results[1:] if isinstance(r, Reject)] == [
        (2, "invalid_json", "not valid UTF-8"),
        (3, "invalid_json", "not valid UTF-8"),
    ]


def _flip(data: bytes, at: int, count: int) -> bytes:
    return data[:at] + bytes(byte ^ 0xFF for byte in data[at : at + count]) + data[at + count :]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "ended before the end-of-stream marker"),
        # Inside the deflate data, just past the 10-byte header: a bad block.
        (lambda data: _flip(data, 12, 8), ""),
        # The trailer's CRC-32 of the data.
        (lambda data: _flip(data, len(data) - 8, 4), "CRC check failed"),
        (lambda data: data[:-4] + (1).to_bytes(4, "little"), "Incorrect length"),
        (lambda data: b"PK" + data[2:], "Not a gzipped file"),
    ],
)
def test_a_damaged_gzip_object_keeps_what_was_read_and_rejects_the_rest(
    tmp_path: Path, damage: Any, message: str
) -> None:
    lines = [json.dumps(event(event_id=f"e-{i}")).encode() for i in range(200)]
    write_lines(tmp_path / "b.jsonl.gz", lines)
    path = tmp_path / "b.jsonl.gz"
    path.write_bytes(damage(path.read_bytes()))
    results = [item for _, _, item in read_events(open_store(str(tmp_path)), "b.jsonl.gz")]
    last = results[-1]
    assert isinstance(last, Reject)
    assert last.kind == "corrupt_object"
    assert last.reason.startswith("unreadable from here on: ")
    assert message in last.reason
    assert last.line == len(results)
    assert all(isinstance(item, EventRecord) for item in results[:-1])


def test_only_jsonl_objects_are_telemetry(tmp_path: Path) -> None:
    for name in ("a.jsonl", "b.jsonl.gz", "notes.txt", "c.json", "sub/d.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    keys = [info.key for info in telemetry_objects(open_store(str(tmp_path)))]
    assert keys == ["a.jsonl", "b.jsonl.gz", "sub/d.jsonl"]


def _normal_schema(node: Any) -> Any:
    """A JSON Schema without titles and descriptions, in one spelling for enums and refs."""
    if isinstance(node, list):
        return [_normal_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _normal_schema(v) for k, v in node.items() if k not in ("title", "description")}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "enum" in out:
        out["enum"] = sorted(out["enum"])
        out.pop("type", None)
    if "$ref" in out:
        out["$ref"] = out["$ref"].removesuffix("Record")
    if "required" in out:
        out["required"] = sorted(out["required"])
    return out


def test_the_fast_record_mirrors_the_model() -> None:
    # Same fields in the same order, and the same types, constraints, defaults and required
    # fields as both libraries write them in JSON Schema.
    assert EventRecord.__struct_fields__ == tuple(TelemetryEvent.model_fields)
    record_schema = msgspec.json.schema(EventRecord)["$defs"]
    model_schema = event_json_schema()
    model_defs = model_schema.pop("$defs")
    assert _normal_schema(record_schema["EventRecord"]) == _normal_schema(model_schema)
    assert _normal_schema(record_schema["ComparisonRecord"]) == _normal_schema(
        model_defs["Comparison"]
    )
    assert ComparisonRecord.__struct_fields__ == tuple(model_defs["Comparison"]["properties"])


def model_verdict(key: str, number: int, line: bytes) -> EventRecord | Reject:
    try:
        return record_of(TelemetryEvent.model_validate_json(line))
    except ValidationError as error:
        return reject_of(key, number, line, error)


def fast_verdict(key: str, number: int, line: bytes) -> EventRecord | Reject | None:
    """What read_events makes of a line (below the length limit)."""
    try:
        return decode_event(line)
    except msgspec.MsgspecError:
        return check_line(key, number, line)


def assert_same_verdict(line: bytes) -> None:
    fast = fast_verdict("k", 3, line)
    model = model_verdict("k", 3, line)
    if isinstance(fast, EventRecord) and isinstance(model, EventRecord):
        # msgspec rounds a 7th fractional digit of a second where pydantic truncates it.
        gap = fast.timestamp - model.timestamp
        assert gap in (timedelta(0), timedelta(microseconds=1))
        assert msgspec.structs.replace(fast, timestamp=model.timestamp) == model
        assert model_timestamp(line) == model.timestamp
    else:
        assert fast == model


EDGE_CASES: list[dict[str, Any]] = [
    {},
    {"thumb": "up", "rating": 5, "dwell_ms": 0, "copied": True},
    # Lax-mode values pydantic accepts and msgspec refuses: the model decides.
    {"rating": 3.0},
    {"rating": "3"},
    {"rating": True},
    {"consent": "true"},
    {"consent": 1},
    {"dwell_ms": "7"},
    {"schema_version": 1.0},
    {"accepted": 0},
    {"timestamp": "2026-01-10T03:04Z"},
    {"timestamp": 1767000000},
    {"timestamp": "2026-01-10T03:04:05,5Z"},
    # Accepted by both.
    {"dwell_ms": 10**30},
    {"dwell_ms": 2**64},
    {"timestamp": "2026-01-10 03:04:05+00:00"},
    {"timestamp": "2026-01-10t03:04:05z"},
    {"timestamp": "2026-01-10T03:04:05.1234567Z"},
    {"timestamp": "2026-01-31T23:59:59.9999999Z"},
    {"timestamp": "2026-01-10T03:04:05+05:30"},
    {"timestamp": "2026-01-10T03:04:05-00:00"},
    {"timestamp": "0001-01-01T00:00:00Z"},
    {"prompt": "caf\u00e9 \U0001f600 \u2028"},
    {"prompt_id": "\U0001f600" * 256},
    {"comparison": {"other_response_id": "r-9", "other_response": "x", "choice": "other"}},
    # Refused by both, with the model's reason.
    {"prompt_id": "\U0001f600" * 257},
    {"prompt_id": ""},
    {"timestamp": "2026-01-10T03:04:60Z"},
    {"timestamp": "2026-01-10"},
    {"timestamp": "2026-02-29T00:00:00Z"},
    {"timestamp": "2026-01-10T24:00:00Z"},
    {"timestamp": "20260110T030405Z"},
    {"dwell_ms": 1.5},
    {"schema_version": "1"},
    {"thumb": "UP"},
    {"extra": 1},
    {"comparison": {"other_response_id": "r", "other_response": "x", "choice": "this", "x": 1}},
    {"comparison": [1, 2]},
]


@pytest.mark.parametrize("overrides", EDGE_CASES)
def test_fast_and_model_verdicts_agree_on_edge_cases(overrides: dict[str, Any]) -> None:
    assert_same_verdict(json.dumps(event(**overrides)).encode())


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"   ",
        b"{not json",
        b"\xff\xfe garbage",
        b"[1, 2]",
        b"null",
        json.dumps(event()).encode() + b" trailing",
        json.dumps(event()).replace('"prompt": "How', '"prompt": "\\ud800 How').encode(),
        json.dumps(event()).replace("How do", "How\x01do").encode(),
        json.dumps(event())[:-1].encode() + b', "prompt": "duplicate key"}',
        b"\xef\xbb\xbf" + json.dumps(event()).encode(),
        b"  " + json.dumps(event()).encode() + b"\r",
    ],
)
def test_fast_and_model_verdicts_agree_on_odd_lines(line: bytes) -> None:
    if not line.strip():
        assert fast_verdict("k", 3, line) is None
        return
    assert_same_verdict(line)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.sampled_from(["up", "down", "this", "other", "2026-01-10T03:04:05Z", "1", "true"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
timestamps = st.builds(
    "{}-{}-{}{}{}:{}:{}{}{}".format,
    st.sampled_from(["2026", "2024", "0001", "9999", "26"]),
    st.sampled_from(["01", "02", "12", "00", "13", "1"]),
    st.sampled_from(["01", "28", "29", "31", "32", "00"]),
    st.sampled_from(["T", "t", " ", "_", "X"]),
    st.sampled_from(["00", "23", "24", "7"]),
    st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["", ".", ".5", ".123456", ".1234564", ".1234565", ".9999999", ",5"]),
    st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+05:30", "+0530", "+05", "+24:00"]),
)
fields = st.sampled_from([*sorted(TelemetryEvent.model_fields), "comparison.choice", "other"])


@settings(max_examples=300)
@given(
    st.lists(st.tuples(fields, json_values | timestamps), max_size=3),
    st.lists(fields, max_size=2),
    st.booleans(),
)
def test_fast_and_model_verdicts_agree(
    changes: list[tuple[str, Any]], dropped: list[str], ascii_only: bool
) -> None:
    fields_now = event(
        comparison={"other_response_id": "r-2", "other_response": "y", "choice": "this"}
    )
    for name, value in changes:
        if name == "comparison.choice":
            if isinstance(fields_now.get("comparison"), dict):
                fields_now["comparison"]["choice"] = value
        else:
            fields_now[name] = value
    for name in dropped:
        fields_now.pop(name, None)
    assert_same_verdict(json.dumps(fields_now, ensure_ascii=ascii_only).encode())


@settings(max_examples=300)
@given(timestamps)
def test_fast_and_model_verdicts_agree_on_timestamps(timestamp: str) -> None:
    assert_same_verdict(json.dumps(event(timestamp=timestamp)).encode())
