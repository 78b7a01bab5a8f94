"""Streaming reads of telemetry objects: line by line, gzip or plain, never a whole object.

Each line becomes a validated :class:`EventRecord` or a :class:`Reject` naming the object,
the 1-based line number and the reason. Blank lines are skipped and not counted.

The pydantic model :class:`~rewardops_trainer.contract.events.TelemetryEvent` is the contract
(and the JSON Schema in docs/telemetry.md), but validating every line with it costs two to
three times what msgspec takes. So each line is first decoded by msgspec into
:class:`EventRecord`, a mirror of the model that parses and validates in one C pass and
accepts a subset of what pydantic's lax mode accepts (``"true"`` is no boolean to it, ``3.0``
no integer). Whatever msgspec refuses goes to the model, which has the last word: it accepts
what its lax mode accepts, and its error names the field of a real reject.
tests/unit/test_telemetry_events.py checks that the two agree (schemas and verdicts).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Annotated, Literal, cast

import msgspec
from isal import igzip, igzip_lib
from pydantic import ValidationError

from rewardops_trainer.contract.events import TelemetryEvent
from rewardops_trainer.storage import ObjectInfo, ObjectStore

TELEMETRY_SUFFIXES = (".jsonl", ".jsonl.gz")
#: A longer line is rejected unparsed: no legitimate event is this large.
MAX_LINE_BYTES = 1 << 20
CHUNK_BYTES = 1 << 20
#: Corrupt deflate data, from ISA-L (its stub types the class as an instance).
_ISAL_ERROR = cast("type[Exception]", igzip_lib.IsalError)

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


# gc=False: records hold only strings, numbers and a nested record, never a cycle, so the
# cyclic collector need not track the millions a run decodes.
class ComparisonRecord(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False
):
    """:class:`~rewardops_trainer.contract.events.Comparison`, field for field."""

    other_response_id: _Id
    other_response: str
    choice: Literal["this", "other"]


class EventRecord(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False):
    """:class:`~rewardops_trainer.contract.events.TelemetryEvent`, field for field.

    One difference: a timestamp with more than 6 fractional digits is rounded to the
    microsecond here and truncated by the model, so the two can differ by 1 µs; see
    :func:`model_timestamp`.
    """

    schema_version: Literal[1] = 1
    event_id: _Id
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    session_id: _Id
    user_id_hash: _Id
    consent: bool
    prompt_id: _Id
    prompt: str
    response_id: _Id
    response: str
    model_version: _Id
    thumb: Literal["up", "down"] | None = None
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    comparison: ComparisonRecord | None = None
    correction: str | None = None
    regenerated: bool = False
    accepted: bool = False
    dwell_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    copied: bool = False
    reported_wrong: bool = False


decode_event = msgspec.json.Decoder(EventRecord).decode
_validate = TelemetryEvent.__pydantic_validator__.validate_json


@dataclass(frozen=True)
class Reject:
    file: str
    line: int
    kind: str
    reason: str

    def to_row(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "kind": self.kind, "reason": self.reason}


def is_telemetry(key: str) -> bool:
    return key.endswith(TELEMETRY_SUFFIXES)


def telemetry_objects(store: ObjectStore) -> list[ObjectInfo]:
    """The ``.jsonl`` / ``.jsonl.gz`` objects under the store root, sorted by key."""
    return [info for info in store.list() if is_telemetry(info.key)]


def _line_batches(stream: IO[bytes]) -> Iterator[list[bytes]]:
    """The lines of a stream, each with its newline (the last may lack one), one list per
    1 MiB read: works the same on files, gzip and HTTP bodies.

    Lists rather than single lines: a generator step per line would cost more than the
    caller's own loop over them. ``BytesIO.readlines`` finds newlines with memchr, twice as
    fast as ``bytes.split``, which compares byte by byte.
    """
    tail = b""
    while chunk := stream.read(CHUNK_BYTES):
        lines = io.BytesIO(chunk).readlines()
        lines[0] = tail + lines[0]
        tail = b"" if lines[-1].endswith(b"\n") else lines.pop()
        yield lines
    if tail:
        yield [tail]


def _open_lines(store: ObjectStore, key: str) -> Iterator[list[bytes]]:
    with store.open_read(key) as raw:
        stream: IO[bytes] = raw
        if key.endswith(".gz"):
            # ISA-L's inflate: the standard library's gzip format handling, more than twice
            # as fast as zlib. Its errors: see read_events.
            stream = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment,no-untyped-call]
        yield from _line_batches(stream)


def _content(line: bytes) -> bytes:
    """A line without its newline."""
    return line[:-1] if line.endswith(b"\n") else line


def iter_lines(store: ObjectStore, key: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line with its newline) for each line, decompressing ``.gz`` on the
    fly."""
    number = 0
    for batch in _open_lines(store, key):
        for line in batch:
            number += 1
            yield number, line


def describe_error(error: ValidationError) -> tuple[str, str]:
    """(kind, one-line reason naming the field) for a rejected line."""
    first = error.errors(include_url=False)[0]
    if first["type"] in ("json_invalid", "json_type"):
        return "invalid_json", f"invalid JSON: {first['msg']}"
    location = ".".join(str(part) for part in first["loc"]) or "event"
    return "invalid_event", f"field {location!r}: {first['msg']}"


def reject_of(key: str, number: int, line: bytes, error: ValidationError) -> Reject:
    kind, reason = describe_error(error)
    if kind == "invalid_json" and _not_utf8(line):
        return Reject(key, number, "invalid_json", "not valid UTF-8")
    return Reject(key, number, kind, reason)


def _not_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def record_of(event: TelemetryEvent) -> EventRecord:
    """The record of an event the model accepted (no validation: the model did it)."""
    fields = dict(event)
    if event.comparison is not None:
        fields["comparison"] = ComparisonRecord(**dict(event.comparison))
    return EventRecord(**fields)


def check_line(key: str, number: int, line: bytes) -> EventRecord | Reject | None:
    """The model's verdict on a line msgspec refused: its record, a reject, or None if blank."""
    line = _content(line)
    try:
        return record_of(_validate(line))
    except ValidationError as error:
        if not line or line.isspace():
            return None
        return reject_of(key, number, line, error)


def model_timestamp(line: bytes) -> datetime:
    """The timestamp of an accepted line as the model reads it (truncated to the microsecond).

    Only needed where a record's timestamp equals a bound it is compared with: a rounded and
    a truncated value differ by at most 1 µs, so they fall on different sides of a bound only
    when the rounded one is on it.
    """
    event: TelemetryEvent = _validate(line)
    return event.timestamp


def read_events(store: ObjectStore, key: str) -> Iterator[tuple[int, bytes, EventRecord | Reject]]:
    """(line number, raw line, record or reject) for every non-blank line.

    A bad line never stops it. The raw line (with its newline) comes along for
    :func:`model_timestamp` and to size buffers; it is never written anywhere (it may hold PII).
    """
    number = 0
    try:
        for batch in _open_lines(store, key):
            # One flat loop: this runs once per event and is the hot path of pass 1.
            for line in batch:
                number += 1
                if len(line) > MAX_LINE_BYTES and len(_content(line)) > MAX_LINE_BYTES:
                    reason = f"line longer than {MAX_LINE_BYTES} bytes"
                    yield number, line, Reject(key, number, "line_too_long", reason)
                    continue
                try:
                    # JSON allows the trailing newline as whitespace.
                    yield number, line, decode_event(line)
                except (msgspec.MsgspecError, UnicodeDecodeError):
                    # msgspec raises UnicodeDecodeError for bytes that are not UTF-8 inside
                    # a string; the model rejects those lines as not valid UTF-8.
                    verdict = check_line(key, number, line)
                    if verdict is not None:
                        yield number, line, verdict
    except (EOFError, gzip.BadGzipFile, _ISAL_ERROR) as error:
        # A truncated .gz (EOFError), a bad header or trailer (BadGzipFile, as the standard
        # library's gzip raises) or corrupt deflate data (IsalError, where zlib raises
        # zlib.error): keep what was read, reject the rest of the object.
        number += 1
        reason = f"unreadable from here on: {error}"
        yield number, b"", Reject(key, number, "corrupt_object", reason)
