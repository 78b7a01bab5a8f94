"""Telemetry to preference pairs in two streaming passes with bounded memory.

Pass 1 reads every telemetry object line by line, rejects malformed lines (kept in
``rejected.jsonl``), drops events outside the window, without consent or on golden prompts,
redacts every text and appends a compact row to one of N spill files chosen by a hash of the
prompt id. Pass 2 loads one spill partition at a time (every event of a prompt is in the same
one), applies the rules per prompt and appends pairs to train or validation by a hash of the
prompt id. Memory is one partition, and N grows with the input, so it stays bounded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rewardops_trainer.contract import DataCounts, RunConfig
from rewardops_trainer.errors import DataError
from rewardops_trainer.storage import ObjectInfo, open_store
from rewardops_trainer.telemetry.events_reader import Reject, read_events, telemetry_objects
from rewardops_trainer.telemetry.redact import KINDS, Redactor
from rewardops_trainer.telemetry.rules import (
    RULE_NAMES,
    Interaction,
    Pair,
    RuleSettings,
    all_rules,
    select_pairs,
)
from rewardops_trainer.telemetry.split import partition_of, split_of

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
#: Events kept per prompt in pass 2, as a multiple of the pair cap: a hot prompt's extra events
#: could only add pairs the cap would drop, and holding them would unbound memory.
EVENTS_PER_PAIR_CAP = 64


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
            prompt_id = row.prompt_id or "golden-" + hashlib.sha256(prompt.encode()).hexdigest()[:16]
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


def partition_count(objects: list[ObjectInfo]) -> int:
    estimated = sum(o.size * (GZIP_RATIO if o.key.endswith(".gz") else 1) for o in objects)
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


def _spill(
    config: RunConfig,
    objects: list[ObjectInfo],
    writers: list[IO[str]],
    rejects: IO[str],
    redact: Redactor,
    golden: list[Pair],
    tally: _Tally,
    reject_kinds: Counter[str],
    progress: _Progress,
) -> Reject | None:
    """Pass 1; returns the first reject (for the error message)."""
    store = open_store(config.telemetry_uri, config.storage)
    since, until = _utc(config.since), _utc(config.until)
    golden_ids = {pair.prompt_id for pair in golden}
    golden_texts = {_normal(pair.prompt) for pair in golden}
    partitions = len(writers)
    dumps = json.dumps
    first_reject: Reject | None = None
    next_report = 100_000
    for index, info in enumerate(objects, start=1):
        progress.say(f"reading {info.key} ({index}/{len(objects)}, {info.size:,} bytes)")
        for event in read_events(store, info.key):
            tally.lines += 1
            if isinstance(event, Reject):
                tally.rejected += 1
                reject_kinds[event.kind] += 1
                first_reject = first_reject or event
                rejects.write(dumps(event.to_row()) + "\n")
                continue
            if tally.lines >= next_report:
                next_report += 100_000
                progress.say(f"{tally.lines:,} lines read")
            if not since <= event.timestamp < until:
                tally.outside_window += 1
                continue
            if not event.consent:
                tally.without_consent += 1
                continue
            prompt = redact(event.prompt)
            if event.prompt_id in golden_ids or (golden_texts and _normal(prompt) in golden_texts):
                tally.golden_prompt += 1
                continue
            other = event.comparison
            row = (
                event.prompt_id,
                prompt,
                event.session_id,
                event.response_id,
                redact(event.response),
                event.thumb,
                event.rating,
                other.other_response_id if other else None,
                redact(other.other_response) if other else None,
                other.choice if other else None,
                redact(event.correction) if event.correction is not None else None,
                event.regenerated,
                event.accepted,
                event.dwell_ms,
                event.copied,
                event.reported_wrong,
            )
            writers[partition_of(event.prompt_id, partitions)].write(dumps(row) + "\n")
            tally.spilled += 1
    return first_reject


def _partition_groups(path: Path, max_events: int, tally: _Tally) -> dict[str, list[Interaction]]:
    groups: dict[str, list[Interaction]] = {}
    loads = json.loads
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            row = Interaction(*loads(line))
            group = groups.get(row.prompt_id)
            if group is None:
                groups[row.prompt_id] = group = []
            if len(group) < max_events:
                group.append(row)
            else:
                tally.hot_prompt_dropped += 1
    return groups


def _write_pairs(stream: IO[str], pairs: list[Pair]) -> None:
    for pair in pairs:
        stream.write(json.dumps(pair.to_row(), ensure_ascii=False) + "\n")


def build_pairs(config: RunConfig, out_dir: Path, *, progress: bool = False) -> PairsResult:
    """Build the preference pairs of ``config``'s telemetry window into ``out_dir``.

    Writes ``pairs/train.jsonl``, ``pairs/validation.jsonl``, ``pairs/golden.jsonl`` (with a
    golden set), ``rejected.jsonl`` and ``manifest.json``. Raises :class:`DataError` when the
    malformed lines exceed ``pairs.maxRejectedFraction`` or the pairs fall short of
    ``pairs.minPairs`` (after writing the manifest and rejects, so the cause can be read).
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
    say.say(f"{len(objects)} objects, {partitions} spill partitions")

    (out_dir / PAIRS_DIR).mkdir(parents=True, exist_ok=True)
    tally = _Tally()
    reject_kinds: Counter[str] = Counter()
    stats: Counter[str] = Counter()
    spill_dir = Path(tempfile.mkdtemp(prefix=".spill-", dir=out_dir))
    try:
        spill_paths = [spill_dir / f"{index:04d}.jsonl" for index in range(partitions)]
        writers = [path.open("w", encoding="utf-8", buffering=1 << 16) for path in spill_paths]
        try:
            with (out_dir / REJECTED_FILE).open("w", encoding="utf-8") as rejects:
                first_reject = _spill(
                    config, objects, writers, rejects, redact, golden, tally, reject_kinds, say
                )
        finally:
            for writer in writers:
                writer.close()
        say.say(f"pass 1 done: {tally.lines:,} lines, {tally.spilled:,} events kept")

        rule_settings = RuleSettings(
            max_pairs_per_prompt=settings.max_pairs_per_prompt,
            max_text_chars=settings.max_text_chars,
            dwell_threshold_ms=settings.dwell_threshold_ms,
        )
        max_events = EVENTS_PER_PAIR_CAP * settings.max_pairs_per_prompt
        split_counts: Counter[str] = Counter()
        by_rule: Counter[str] = Counter()
        prompts: Counter[str] = Counter()
        with (
            (out_dir / TRAIN_FILE).open("w", encoding="utf-8") as train,
            (out_dir / VALIDATION_FILE).open("w", encoding="utf-8") as validation,
        ):
            for index, path in enumerate(spill_paths):
                groups = _partition_groups(path, max_events, tally)
                for prompt_id in sorted(groups):
                    pairs = select_pairs(groups[prompt_id], rule_settings, stats)
                    if not pairs:
                        continue
                    split = split_of(prompt_id, settings.validation_fraction)
                    _write_pairs(train if split == "train" else validation, pairs)
                    split_counts[split] += len(pairs)
                    prompts[split] += 1
                    by_rule.update(pair.rule for pair in pairs)
                path.unlink()
                if (index + 1) % max(1, partitions // 10) == 0:
                    say.say(f"pass 2: {index + 1}/{partitions} partitions")
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)

    golden_path: Path | None = None
    if golden:
        golden_path = out_dir / GOLDEN_FILE
        with golden_path.open("w", encoding="utf-8") as stream:
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
        pairs_train=split_counts["train"],
        pairs_validation=split_counts["validation"],
        pairs_golden=len(golden),
        pairs_by_rule={name: by_rule[name] for name in RULE_NAMES},
    )
    manifest = _manifest(
        config, objects, inputs_digest, pairs_digest, output_digests, counts, tally,
        reject_kinds, redact, stats, prompts, partitions,
    )
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    say.say(
        f"done: {counts.pairs_train:,} train, {counts.pairs_validation:,} validation pairs; "
        f"{tally.rejected:,} rejected lines, {redact.total:,} redactions"
    )
    _check(config, counts, tally, first_reject)
    return PairsResult(
        out_dir=out_dir,
        train_path=out_dir / TRAIN_FILE,
        validation_path=out_dir / VALIDATION_FILE,
        golden_path=golden_path,
        counts=counts,
        input_digest=inputs_digest,
        pairs_digest=pairs_digest,
    )


def _check(config: RunConfig, counts: DataCounts, tally: _Tally, first: Reject | None) -> None:
    settings = config.pairs
    if tally.lines and tally.rejected / tally.lines > settings.max_rejected_fraction:
        detail = f"; first: {first.file} line {first.line}: {first.reason}" if first else ""
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
    objects: list[ObjectInfo],
    inputs_digest: str,
    pairs_digest: str,
    output_digests: dict[str, str],
    counts: DataCounts,
    tally: _Tally,
    reject_kinds: Counter[str],
    redact: Redactor,
    stats: Counter[str],
    prompts: Counter[str],
    partitions: int,
) -> dict[str, Any]:
    def prefixed(prefix: str) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}

    return {
        "schemaVersion": MANIFEST_SCHEMA_VERSION,
        "telemetryUri": config.telemetry_uri,
        "goldenUri": config.golden_uri,
        "window": {"since": _utc(config.since).isoformat(), "until": _utc(config.until).isoformat()},
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
        "redactions": {kind: redact.counts[kind] for kind in KINDS},
        "rules": {
            rule.name: {"weight": rule.weight, "margin": rule.margin} for rule in all_rules()
        },
        "candidatesByRule": prefixed("candidates:"),
        "dropped": prefixed("dropped:"),
        "prompts": {"train": prompts["train"], "validation": prompts["validation"]},
        "partitions": partitions,
    }


def read_pairs(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a pair file (for tests and tools)."""
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            yield json.loads(line)
