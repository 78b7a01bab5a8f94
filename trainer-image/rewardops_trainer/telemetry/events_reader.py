"""Streaming reads of telemetry objects: line by line, gzip or plain, never a whole object.

Each line becomes a validated :class:`TelemetryEvent` or a :class:`Reject` naming the object,
the 1-based line number and the reason. Blank lines are skipped and not counted.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from pydantic import ValidationError

from rewardops_trainer.contract.events import TelemetryEvent
from rewardops_trainer.storage import ObjectInfo, ObjectStore

TELEMETRY_SUFFIXES = (".jsonl", ".jsonl.gz")
#: A longer line is rejected unparsed: no legitimate event is this large.
MAX_LINE_BYTES = 1 << 20
CHUNK_BYTES = 1 << 20


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


def _split_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of a stream read in 1 MiB chunks: works the same on files, gzip and HTTP bodies."""
    tail = b""
    while chunk := stream.read(CHUNK_BYTES):
        lines = chunk.split(b"\n")
        lines[0] = tail + lines[0]
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail


def iter_lines(store: ObjectStore, key: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for each line of the object, decompressing ``.gz`` on the fly."""
    with store.open_read(key) as raw:
        stream: IO[bytes] = raw
        if key.endswith(".gz"):
            stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        yield from enumerate(_split_lines(stream), start=1)


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


def read_events(store: ObjectStore, key: str) -> Iterator[tuple[int, TelemetryEvent | Reject]]:
    """(line number, event or reject) for every non-blank line; a bad line never stops it."""
    # The core validator itself: model_validate_json adds a Python call per line for nothing.
    validate = TelemetryEvent.__pydantic_validator__.validate_json
    number = 0
    try:
        # One flat loop: this runs once per event and is the hot path of pass 1.
        for number, line in iter_lines(store, key):
            if len(line) > MAX_LINE_BYTES:
                yield (
                    number,
                    Reject(
                        key, number, "line_too_long", f"line longer than {MAX_LINE_BYTES} bytes"
                    ),
                )
                continue
            try:
                yield number, validate(line)
            except ValidationError as error:
                if not line or line.isspace():
                    continue
                yield number, reject_of(key, number, line, error)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        # A truncated or corrupt .gz: keep what was read, reject the rest of the object.
        yield (
            number + 1,
            Reject(key, number + 1, "corrupt_object", f"unreadable from here on: {error}"),
        )
