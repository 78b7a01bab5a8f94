"""Telemetry to preference pairs in two streaming passes with bounded memory.

Pass 1 reads every telemetry object line by line, rejects malformed lines (kept in
``rejected.jsonl``), drops events outside the window, without consent or on golden prompts,
redacts every text and appends a compact row to one of N spill files chosen by a hash of the
prompt id (rows are buffered and written in msgpack frames; a hot prompt's events past those
pass 2 reads are only counted). Pass 2 loads one spill partition at a time (every event of a
prompt is in the same one), applies the rules per prompt and appends pairs to train or
validation by a hash of the prompt id. Memory is one partition and the bounded buffers and
caches, and N grows with the input, so it stays bounded. With several processes, this one
works beside its helpers: objects are split between them in pass 1, partitions in pass 2.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import multiprocessing
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rewardops_trainer.contract import DataCounts, RunConfig
from rewardops_trainer.errors import DataError
from rewardops_trainer.storage import ObjectInfo, open_store
from rewardops_trainer.telemetry.events_reader import (
    Reject,
    model_timestamp,
    read_events,
    telemetry_objects,
)
from rewardops_trainer.telemetry.redact import KINDS, Redactor
from rewardops_trainer.telemetry.rules import (
    RULE_NAMES,
    Interaction,
    Pair,
    RuleSettings,
    all_rules,
    select_pairs,
)
from rewardops_trainer.telemetry.split import split_of

J = TypeVar("J")
R = TypeVar("R")

MANIFEST_SCHEMA_VERSION = 1
PAIRS_DIR = "pairs"
TRAIN_FILE = f"{PAIRS_DIR}/train.jsonl"
VALIDATION_FILE = f"{PAIRS_DIR}/validation.jsonl"
GOLDEN_FILE = f"{PAIRS_DIR}/golden.jsonl"
REJECTED_FILE = "rejected.jsonl"
MANIFEST_FILE = "manifest.json"

#: Uncompressed input bytes per spill partition; sets how much one pass-2 step holds.
PARTITION_INPUT_BYTES = 16 << 20
#: gzip telemetry is JSON text; assume this ratio when sizing partitions.
GZIP_RATIO = 6
MIN_PARTITIONS, MAX_PARTITIONS = 4, 512
#: Below this much (uncompressed) input, worker processes cost more than they save.
PARALLEL_MIN_BYTES = 64 << 20
MAX_WORKERS = 8
#: Events kept per prompt in pass 2, as a multiple of the pair cap: a hot prompt's extra events
#: could only add pairs the cap would drop, and holding them would unbound memory.
EVENTS_PER_PAIR_CAP = 64
#: Pass 1 buffers rows and writes them out, a frame per partition, once the buffered rows'
#: input lines reach this much per partition (a dozen rows or so a frame): small enough that
#: the rows are still in cache when encoded (13 fewer L2 misses a line than flushing every
#: 8 MiB, by cachegrind at 39 partitions) ...
SPILL_FRAME_BYTES = 8 << 10
#: ... or this much in all, so that memory stays bounded whatever the partition count.
SPILL_BUFFER_BYTES = 8 << 20


@dataclass(frozen=True)
class PairsResult:
    out_dir: Path
    train_path: Path
    validation_path: Path
    golden_path: Path | None
    counts: DataCounts
    input_digest: str
    pairs_digest: str


class GoldenRow(BaseModel):
    """One line of the golden-set JSONL (curated pairs, never trained on)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1)
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    prompt_id: str | None = None
    weight: float = 1.0
    margin: float = 1.0
    rule: str = "golden"


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _normal(text: str) -> str:
    return " ".join(text.split())


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def input_digest(objects: list[ObjectInfo]) -> str:
    digest = hashlib.sha256()
    for info in objects:
        digest.update(f"{info.key}\t{info.size}\t{info.etag}\n".encode())
    return digest.hexdigest()


def _split_uri(uri: str) -> tuple[str, str]:
    parent, _, key = uri.rstrip("/").rpartition("/")
    if not key or not parent:
        raise DataError(f"golden set {uri!r}: expected the URI of a JSONL object")
    return parent, key


def _load_golden(config: RunConfig, redact: Redactor) -> list[Pair]:
    """The golden pairs, redacted; golden data is curated, so any bad line is an error."""
    assert config.golden_uri is not None
    parent, key = _split_uri(config.golden_uri)
    store = open_store(parent, config.storage)
    pairs: list[Pair] = []
    with store.open_read(key) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = GoldenRow.model_validate_json(line)
            except ValidationError as error:
                first = error.errors(include_url=False)[0]
                where = ".".join(str(part) for part in first["loc"]) or "row"
                raise DataError(
                    f"golden set {config.golden_uri} line {number}: {where}: {first['msg']}"
                ) from None
            prompt = redact(row.prompt)
            prompt_id = (
                row.prompt_id or "golden-" + hashlib.sha256(prompt.encode()).hexdigest()[:16]
            )
            pairs.append(
                Pair(
                    prompt_id,
                    prompt,
                    redact(row.chosen),
                    redact(row.rejected),
                    row.weight,
                    row.margin,
                    row.rule,
                )
            )
    if not pairs:
        raise DataError(f"golden set {config.golden_uri} has no pairs")
    return pairs


def _estimated_size(info: ObjectInfo) -> int:
    return info.size * (GZIP_RATIO if info.key.endswith(".gz") else 1)


def _estimated_bytes(objects: list[ObjectInfo]) -> int:
    return sum(map(_estimated_size, objects))


def partition_count(objects: list[ObjectInfo]) -> int:
    estimated = _estimated_bytes(objects)
    return max(MIN_PARTITIONS, min(MAX_PARTITIONS, -(-estimated // PARTITION_INPUT_BYTES)))


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            print(f"[pairs {elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class _Tally:
    lines: int = 0
    rejected: int = 0
    outside_window: int = 0
    without_consent: int = 0
    golden_prompt: int = 0
    spilled: int = 0
    hot_prompt_dropped: int = 0

    def add(self, other: dict[str, int]) -> None:
        for name, value in other.items():
            setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True)
class _SpillJob:
    """Pass 1 for some of the objects; plain data, so it can go to a worker process."""

    config_json: str
    objects: list[tuple[int, str]]  # (index in the sorted input, key)
    total_objects: int
    partitions: int
    spill_dir: str
    worker: int
    golden_ids: frozenset[str]
    golden_texts: frozenset[str]
    #: pass 2 reads at most this many events of a prompt (the first, in input order)
    max_events: int
    progress: bool


@dataclass(frozen=True)
class _PairJob:
    """Pass 2 for one partition."""

    spill_dir: str
    partition: int
    rules: RuleSettings
    validation_fraction: float
    max_events: int


def _spill(job: _SpillJob) -> dict[str, dict[str, int]]:
    """Pass 1 over ``job.objects``: rejects per object, redacted rows per partition."""
    with _gc_paused():
        return _spill_now(job)


def _spill_now(job: _SpillJob) -> dict[str, dict[str, int]]:
    config = RunConfig.model_validate_json(job.config_json)
    say = _Progress(job.progress)
    store = open_store(config.telemetry_uri, config.storage)
    # In timezone.utc, the tzinfo msgspec gives UTC timestamps: comparing datetimes with the
    # same tzinfo object skips two utcoffset() calls (pydantic's TzInfo is a Python call).
    since, until = _utc(config.since).astimezone(UTC), _utc(config.until).astimezone(UTC)
    redact = Redactor()
    # Tested here before calling: most texts repeat and hold nothing to redact, and the call
    # would cost more than the test.
    clean = redact.clean
    kinds: Counter[str] = Counter()
    golden_ids, golden_texts = job.golden_ids, job.golden_texts
    # Prompts repeat: remember which redacted prompt texts are golden instead of re-normalising.
    golden_seen: dict[str, bool] = {}
    partitions = job.partitions
    spill = Path(job.spill_dir)
    writers = [
        (spill / f"{p:04d}-w{job.worker:02d}.bin").open("wb", buffering=1 << 16)
        for p in range(partitions)
    ]
    buffers: list[list[tuple[Any, ...]]] = [[] for _ in range(partitions)]
    # A prompt's events come in input order here, so once this process has spilled
    # max_events of them the rest cannot be among the first max_events of all processes,
    # the only ones pass 2 reads: only their number is spilled (for the manifest), which
    # spares a row each way for most events of a hot prompt. Forgetting a prompt's count
    # (to bound memory) only spills more rows than needed.
    max_events = job.max_events
    spilled_rows: dict[str, int] = {}
    skipped: list[dict[str, int]] = [{} for _ in range(partitions)]
    buffered = 0  # input bytes of the buffered rows: bounds the buffers' memory
    flush_at = min(SPILL_BUFFER_BYTES, partitions * SPILL_FRAME_BYTES)
    crc32 = zlib.crc32
    # Plain local counters: this loop runs once per event.
    lines = rejected = outside = no_consent = golden_prompt = spilled = 0
    try:
        for index, key in job.objects:
            say.say(f"reading {key} ({index + 1}/{job.total_objects})")
            base = index << 32  # rows sort by (object, line) whatever worker read them
            with (spill / f"rejects-{index:06d}.jsonl").open("w", encoding="utf-8") as rejects:
                for number, line, event in read_events(store, key):
                    lines += 1
                    if isinstance(event, Reject):
                        rejected += 1
                        kinds[event.kind] += 1
                        rejects.write(json.dumps(event.to_row()) + "\n")
                        continue
                    stamp = event.timestamp
                    if not since < stamp < until:
                        if stamp in (since, until):
                            stamp = model_timestamp(line)
                        if not since <= stamp < until:
                            outside += 1
                            continue
                    if not event.consent:
                        no_consent += 1
                        continue
                    prompt = event.prompt
                    if prompt not in clean:
                        prompt = redact(prompt)
                    if golden_texts:
                        is_golden = golden_seen.get(prompt)
                        if is_golden is None:
                            if len(golden_seen) > 100_000:
                                golden_seen.clear()
                            is_golden = golden_seen[prompt] = _normal(prompt) in golden_texts
                        if is_golden or event.prompt_id in golden_ids:
                            golden_prompt += 1
                            continue
                    response = event.response
                    if response not in clean:
                        response = redact(response)
                    other = event.comparison
                    other_id = other_response = choice = None
                    if other is not None:
                        other_id, choice = other.other_response_id, other.choice
                        other_response = other.other_response
                        if other_response not in clean:
                            other_response = redact(other_response)
                    correction = event.correction
                    if correction is not None and correction not in clean:
                        correction = redact(correction)
                    prompt_id = event.prompt_id
                    spilled += 1
                    # Same hash as split.partition_of, inlined: this runs once per event.
                    partition = crc32(prompt_id.encode()) % partitions
                    rows = spilled_rows.get(prompt_id, 0)
                    if rows >= max_events:
                        hot = skipped[partition]
                        hot[prompt_id] = hot.get(prompt_id, 0) + 1
                        continue
                    if rows == 0 and len(spilled_rows) >= MAX_REMEMBERED_PROMPTS:
                        spilled_rows.clear()
                    spilled_rows[prompt_id] = rows + 1
                    buffers[partition].append(
                        (
                            base | number,
                            prompt_id,
                            prompt,
                            event.session_id,
                            event.response_id,
                            response,
                            event.thumb,
                            event.rating,
                            other_id,
                            other_response,
                            choice,
                            correction,
                            event.regenerated,
                            event.accepted,
                            event.dwell_ms,
                            event.copied,
                            event.reported_wrong,
                        )
                    )
                    buffered += len(line)
                    if buffered > flush_at:
                        _flush(buffers, skipped, writers)
                        buffered = 0
        _flush(buffers, skipped, writers)
    finally:
        for writer in writers:
            writer.close()
    tally = _Tally(lines, rejected, outside, no_consent, golden_prompt, spilled)
    return {"tally": asdict(tally), "kinds": dict(kinds), "redactions": dict(redact.counts)}


_encode_msgpack = msgspec.msgpack.Encoder().encode
_encode_json = msgspec.json.Encoder().encode
_DECODERS = {
    b"m": msgspec.msgpack.Decoder(list[Interaction]).decode,
    b"j": msgspec.json.Decoder(list[Interaction]).decode,
}
_decode_skipped = msgspec.msgpack.Decoder(dict[str, int]).decode
#: A frame's byte length and format: rows in msgpack, or in JSON for the rare rows msgpack
#: cannot hold, or (``s``) how many events of each hot prompt were not spilled.
_FRAME_HEADER = struct.Struct("<Ic")
#: Prompts whose spilled events pass 1 counts at once, to know when a prompt is hot.
MAX_REMEMBERED_PROMPTS = 100_000


def _flush(
    buffers: list[list[tuple[Any, ...]]],
    skipped: list[dict[str, int]],
    writers: Sequence[IO[bytes]],
) -> None:
    """Append each partition's buffered rows to its spill file as one frame, and the counts
    of the events not spilled as another, then empty them.

    One C call each way for hundreds of rows, where a line per row took one per row.
    """
    for rows, hot, writer in zip(buffers, skipped, writers, strict=True):
        if rows:
            try:
                frame, kind = _encode_msgpack(rows), b"m"
            except OverflowError:
                # An integer past 64 bits (the model accepts any dwell_ms): JSON has no limit.
                frame, kind = _encode_json(rows), b"j"
            writer.write(_FRAME_HEADER.pack(len(frame), kind))
            writer.write(frame)
            rows.clear()
        if hot:
            frame = _encode_msgpack(hot)
            writer.write(_FRAME_HEADER.pack(len(frame), b"s"))
            writer.write(frame)
            hot.clear()


def _read_frames(stream: IO[bytes], skipped: dict[str, int]) -> Iterator[list[Interaction]]:
    """The rows of a spill file, frame by frame; adds the counts of events not spilled to
    ``skipped``."""
    while header := stream.read(_FRAME_HEADER.size):
        size, kind = _FRAME_HEADER.unpack(header)
        frame = stream.read(size)
        if kind == b"s":
            for prompt_id, count in _decode_skipped(frame).items():
                skipped[prompt_id] = skipped.get(prompt_id, 0) + count
        else:
            yield _DECODERS[kind](frame)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, then restore it as it was.

    Both passes hold many acyclic objects that stay alive (pass 2 a partition's rows until
    its pairs are written, pass 1 the rows buffered for the spill and the redaction cache), so
    each collection would walk them again for nothing: about a fifth of pass 2's time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _pairs_of_partition(job: _PairJob) -> dict[str, dict[str, int]]:
    """Pass 2 for one partition: pairs to ``pairs-NNNN-<split>.jsonl`` in the spill folder."""
    with _gc_paused():
        return _pairs_of_partition_now(job)


def _pairs_of_partition_now(job: _PairJob) -> dict[str, dict[str, int]]:
    spill = Path(job.spill_dir)
    groups: dict[str, list[Interaction]] = {}
    skipped: dict[str, int] = {}  # prompt id -> its events pass 1 did not spill
    hot_dropped = 0
    for path in sorted(spill.glob(f"{job.partition:04d}-w*.bin")):
        with path.open("rb") as stream:
            for rows in _read_frames(stream, skipped):
                for row in rows:
                    group = groups.get(row.prompt_id)
                    if group is None:
                        groups[row.prompt_id] = group = []
                    group.append(row)
        path.unlink()
    # defaultdict, not Counter: a Counter defines __delitem__, so every store into one goes
    # through a Python-level slot, several times per prompt here.
    stats: defaultdict[str, int] = defaultdict(int)
    counts: defaultdict[str, int] = defaultdict(int)
    with (
        (spill / f"pairs-{job.partition:04d}-train.jsonl").open("wb") as train,
        (spill / f"pairs-{job.partition:04d}-validation.jsonl").open("wb") as validation,
    ):
        for prompt_id in sorted(groups):
            group = sorted(groups[prompt_id])  # by (object, line): the input order
            events = len(group) + skipped.get(prompt_id, 0)
            if events > job.max_events:
                hot_dropped += events - job.max_events
                group = group[: job.max_events]
            pairs = select_pairs(group, job.rules, stats)
            if not pairs:
                continue
            split = split_of(prompt_id, job.validation_fraction)
            _write_pairs(train if split == "train" else validation, pairs)
            counts[f"pairs:{split}"] += len(pairs)
            counts[f"prompts:{split}"] += 1
            for pair in pairs:
                counts[f"rule:{pair.rule}"] += 1
    counts["hot_prompt_dropped"] += hot_dropped
    return {"stats": dict(stats), "counts": dict(counts)}


_json_string = msgspec.json.encode


def _json_number(value: float) -> bytes:
    # A finite float as json.dumps writes it (msgspec writes 1e-07 as 1e-7).
    if type(value) is float and value - value == 0.0:
        return repr(value).encode()
    return json.dumps(value).encode()


def pair_line(pair: Pair) -> bytes:
    """``json.dumps(pair.to_row(), ensure_ascii=False)`` and a newline, as UTF-8, faster.

    msgspec escapes a string exactly as json does with ``ensure_ascii=False`` (every code
    point checked) but several times faster; the separators are json's defaults.
    """
    return b"".join(
        (
            b'{"prompt": ',
            _json_string(pair.prompt),
            b', "chosen": ',
            _json_string(pair.chosen),
            b', "rejected": ',
            _json_string(pair.rejected),
            b', "weight": ',
            _json_number(pair.weight),
            b', "margin": ',
            _json_number(pair.margin),
            b', "rule": ',
            _json_string(pair.rule),
            b', "prompt_id": ',
            _json_string(pair.prompt_id),
            b"}\n",
        )
    )


def _write_pairs(stream: IO[bytes], pairs: list[Pair]) -> None:
    stream.writelines([pair_line(pair) for pair in pairs])


def _concatenate(sources: list[Path], target: Path) -> None:
    with target.open("wb") as out:
        for source in sources:
            if source.exists():
                with source.open("rb") as stream:
                    shutil.copyfileobj(stream, out, 1 << 20)


def default_workers(objects: list[ObjectInfo]) -> int:
    """Processes for a run, this one included: one for small inputs (a process costs a
    second to start)."""
    if _estimated_bytes(objects) < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS, len(objects)))


@dataclass
class _Pool:
    """Helper processes; this process works beside them instead of waiting."""

    executor: ProcessPoolExecutor
    processes: int


def _run(function: Callable[[J], R], jobs: list[J], pool: _Pool | None) -> list[R]:
    """``map`` over ``jobs``, shared between this process and ``pool``; results in job order.

    Jobs go to the helpers while they have room, the next one to this process. With many
    jobs each helper gets one queued behind the one it runs, so that it never waits while
    this process works; with few (pass 1: one per process) none is queued, or a big job
    would wait behind another while this process had nothing to do.
    """
    if pool is None or len(jobs) <= 1:
        return [function(job) for job in jobs]
    room = pool.processes * (2 if len(jobs) > 2 * (pool.processes + 1) else 1)
    results: dict[int, R] = {}
    in_flight: dict[Future[R], int] = {}
    for index, job in enumerate(jobs):
        if len(in_flight) < room:
            in_flight[pool.executor.submit(function, job)] = index
            continue
        results[index] = function(job)
        for future in [future for future in in_flight if future.done()]:
            results[in_flight.pop(future)] = future.result()
    for future, index in in_flight.items():
        results[index] = future.result()
    return [results[index] for index in range(len(jobs))]


def _pool(workers: int) -> _Pool | None:
    """One pool for both passes: a spawned process takes about a second to import its modules."""
    if workers <= 1:
        return None
    # spawn, not fork: forking a process that may hold threads (S3 client pools) is unsafe.
    context = multiprocessing.get_context("spawn")
    helpers = workers - 1
    return _Pool(ProcessPoolExecutor(max_workers=helpers, mp_context=context), helpers)


def build_pairs(
    config: RunConfig, out_dir: Path, *, progress: bool = False, workers: int | None = None
) -> PairsResult:
    """Build the preference pairs of ``config``'s telemetry window into ``out_dir``.

    Writes ``pairs/train.jsonl``, ``pairs/validation.jsonl``, ``pairs/golden.jsonl`` (with a
    golden set), ``rejected.jsonl`` and ``manifest.json``. Raises :class:`DataError` when the
    malformed lines exceed ``pairs.maxRejectedFraction`` or the pairs fall short of
    ``pairs.minPairs`` (after writing the manifest and rejects, so the cause can be read).
    ``workers`` (default: by input size and CPUs) never changes the output, only the speed.
    """
    say = _Progress(progress)
    settings = config.pairs
    store = open_store(config.telemetry_uri, config.storage)
    objects = telemetry_objects(store)
    if not objects:
        raise DataError(f"{config.telemetry_uri}: no telemetry objects (.jsonl or .jsonl.gz)")
    redact = Redactor()
    golden = _load_golden(config, redact) if config.golden_uri else []
    partitions = partition_count(objects)
    workers = workers or default_workers(objects)
    say.say(f"{len(objects)} objects, {partitions} spill partitions, {workers} process(es)")

    (out_dir / PAIRS_DIR).mkdir(parents=True, exist_ok=True)
    tally = _Tally()
    reject_kinds: Counter[str] = Counter()
    stats: Counter[str] = Counter()
    counts_2: Counter[str] = Counter()
    spill_dir = Path(tempfile.mkdtemp(prefix=".spill-", dir=out_dir))
    max_events = EVENTS_PER_PAIR_CAP * settings.max_pairs_per_prompt
    pool = _pool(workers)
    try:
        batches: list[list[tuple[int, str]]] = [[] for _ in range(min(workers, len(objects)))]
        loads = [0] * len(batches)
        # Largest objects first, each to the least-loaded worker; by uncompressed size, as
        # the work per byte of gzip is that of its JSON.
        by_size = sorted(enumerate(objects), key=lambda item: -_estimated_size(item[1]))
        for index, info in by_size:
            lightest = loads.index(min(loads))
            batches[lightest].append((index, info.key))
            loads[lightest] += _estimated_size(info)
        jobs = [
            _SpillJob(
                config_json=config.model_dump_json(),
                objects=sorted(batch),
                total_objects=len(objects),
                partitions=partitions,
                spill_dir=str(spill_dir),
                worker=worker,
                golden_ids=frozenset(pair.prompt_id for pair in golden),
                golden_texts=frozenset(_normal(pair.prompt) for pair in golden),
                max_events=max_events,
                progress=progress,
            )
            for worker, batch in enumerate(batches)
        ]
        for result in _run(_spill, jobs, pool):
            tally.add(result["tally"])
            reject_kinds.update(result["kinds"])
            redact.counts.update(result["redactions"])
        reject_files = [spill_dir / f"rejects-{index:06d}.jsonl" for index in range(len(objects))]
        _concatenate(reject_files, out_dir / REJECTED_FILE)
        say.say(f"pass 1 done: {tally.lines:,} lines, {tally.spilled:,} events kept")

        rules = RuleSettings(
            max_pairs_per_prompt=settings.max_pairs_per_prompt,
            max_text_chars=settings.max_text_chars,
            dwell_threshold_ms=settings.dwell_threshold_ms,
        )
        pair_jobs = [
            _PairJob(str(spill_dir), partition, rules, settings.validation_fraction, max_events)
            for partition in range(partitions)
        ]
        for result in _run(_pairs_of_partition, pair_jobs, pool):
            stats.update(result["stats"])
            counts_2.update(result["counts"])
        for split, name in (("train", TRAIN_FILE), ("validation", VALIDATION_FILE)):
            parts = [spill_dir / f"pairs-{p:04d}-{split}.jsonl" for p in range(partitions)]
            _concatenate(parts, out_dir / name)
        tally.hot_prompt_dropped = counts_2["hot_prompt_dropped"]
        say.say(f"pass 2 done: {partitions} partitions")
    finally:
        if pool is not None:
            pool.executor.shutdown(cancel_futures=True)
        shutil.rmtree(spill_dir, ignore_errors=True)

    golden_path: Path | None = None
    if golden:
        golden_path = out_dir / GOLDEN_FILE
        with golden_path.open("wb") as stream:
            _write_pairs(stream, golden)

    outputs = [TRAIN_FILE, VALIDATION_FILE] + ([GOLDEN_FILE] if golden else [])
    output_digests = {name: _sha256_file(out_dir / name) for name in outputs}
    pairs_digest = hashlib.sha256(
        "".join(f"{name}\t{digest}\n" for name, digest in output_digests.items()).encode()
    ).hexdigest()
    inputs_digest = input_digest(objects)
    counts = DataCounts(
        events_read=tally.lines,
        events_rejected=tally.rejected,
        events_without_consent=tally.without_consent,
        redactions=redact.total,
        pairs_train=counts_2["pairs:train"],
        pairs_validation=counts_2["pairs:validation"],
        pairs_golden=len(golden),
        pairs_by_rule={name: counts_2[f"rule:{name}"] for name in RULE_NAMES},
    )
    prompts = {"train": counts_2["prompts:train"], "validation": counts_2["prompts:validation"]}
    manifest = _manifest(
        config,
        objects=objects,
        inputs_digest=inputs_digest,
        pairs_digest=pairs_digest,
        output_digests=output_digests,
        counts=counts,
        tally=tally,
        reject_kinds=reject_kinds,
        redactions=redact.counts,
        stats=stats,
        prompts=prompts,
        partitions=partitions,
    )
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    say.say(
        f"done: {counts.pairs_train:,} train, {counts.pairs_validation:,} validation pairs; "
        f"{tally.rejected:,} rejected lines, {redact.total:,} redactions"
    )
    _check(config, counts, tally, out_dir / REJECTED_FILE)
    return PairsResult(
        out_dir=out_dir,
        train_path=out_dir / TRAIN_FILE,
        validation_path=out_dir / VALIDATION_FILE,
        golden_path=golden_path,
        counts=counts,
        input_digest=inputs_digest,
        pairs_digest=pairs_digest,
    )


def _check(config: RunConfig, counts: DataCounts, tally: _Tally, rejected: Path) -> None:
    settings = config.pairs
    if tally.lines and tally.rejected / tally.lines > settings.max_rejected_fraction:
        with rejected.open(encoding="utf-8") as stream:
            first = json.loads(stream.readline())
        detail = f"; first: {first['file']} line {first['line']}: {first['reason']}"
        raise DataError(
            f"{tally.rejected} of {tally.lines} telemetry lines are malformed "
            f"({tally.rejected / tally.lines:.1%}), above pairs.maxRejectedFraction "
            f"{settings.max_rejected_fraction:.1%}; see {REJECTED_FILE}{detail}"
        )
    total = counts.pairs_train + counts.pairs_validation
    if total < settings.min_pairs:
        raise DataError(
            f"only {total} preference pairs from {config.telemetry_uri} in "
            f"[{config.since.isoformat()}, {config.until.isoformat()}), fewer than "
            f"pairs.minPairs {settings.min_pairs} ({tally.lines} lines read, "
            f"{tally.outside_window} outside the window, {tally.without_consent} without "
            f"consent, {tally.rejected} rejected)"
        )


def _manifest(
    config: RunConfig,
    *,
    objects: list[ObjectInfo],
    inputs_digest: str,
    pairs_digest: str,
    output_digests: dict[str, str],
    counts: DataCounts,
    tally: _Tally,
    reject_kinds: Counter[str],
    redactions: Counter[str],
    stats: Counter[str],
    prompts: dict[str, int],
    partitions: int,
) -> dict[str, Any]:
    def prefixed(prefix: str) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}

    return {
        "schemaVersion": MANIFEST_SCHEMA_VERSION,
        "telemetryUri": config.telemetry_uri,
        "goldenUri": config.golden_uri,
        "window": {
            "since": _utc(config.since).isoformat(),
            "until": _utc(config.until).isoformat(),
        },
        "inputs": [{"key": o.key, "size": o.size, "etag": o.etag} for o in objects],
        "inputDigest": inputs_digest,
        "configDigest": config.digest(),
        "pairSettings": config.pairs.model_dump(by_alias=True),
        "pairsDigest": pairs_digest,
        "outputs": output_digests,
        "counts": counts.model_dump(by_alias=True),
        "events": {
            "lines": tally.lines,
            "rejected": tally.rejected,
            "outsideWindow": tally.outside_window,
            "withoutConsent": tally.without_consent,
            "goldenPrompt": tally.golden_prompt,
            "kept": tally.spilled,
            "hotPromptDropped": tally.hot_prompt_dropped,
        },
        "rejects": {"file": REJECTED_FILE, "byKind": dict(sorted(reject_kinds.items()))},
        "redactions": {kind: redactions[kind] for kind in KINDS},
        "rules": {
            rule.name: {"weight": rule.weight, "margin": rule.margin} for rule in all_rules()
        },
        "candidatesByRule": prefixed("candidates:"),
        "dropped": prefixed("dropped:"),
        "prompts": {"train": prompts["train"], "validation": prompts["validation"]},
        "partitions": partitions,
    }
