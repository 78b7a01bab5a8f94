"""The synthetic telemetry generator: deterministic, valid events with the planted
preference, PII, malformed lines, no-consent events, and poisoned (flipped) feedback."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rewardops_trainer.contract.events import TelemetryEvent
from rewardops_trainer.storage import open_store
from rewardops_trainer.synthetic import (
    better_response,
    generate_golden,
    generate_telemetry,
    hidden_quality,
    synthetic_prompt,
    worse_response,
)
from rewardops_trainer.telemetry.redact import redact_text

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 2, tzinfo=UTC)


def lines_of(root: Path) -> list[str]:
    out: list[str] = []
    for path in sorted(root.iterdir()):
        data = path.read_bytes()
        out += (gzip.decompress(data) if path.name.endswith(".gz") else data).decode().splitlines()
    return out


def parsed(lines: list[str]) -> tuple[list[TelemetryEvent], int]:
    events, bad = [], 0
    for line in lines:
        try:
            events.append(TelemetryEvent.model_validate_json(line))
        except ValidationError:
            bad += 1
    return events, bad


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        generate_telemetry(
            open_store(str(tmp_path / name)), events=300, seed=seed, start=START, end=END
        )
    assert lines_of(tmp_path / "a") == lines_of(tmp_path / "b")
    assert lines_of(tmp_path / "a") != lines_of(tmp_path / "c")


def test_stream_matches_its_summary(tmp_path: Path) -> None:
    summary = generate_telemetry(
        open_store(str(tmp_path)),
        events=3000,
        seed=5,
        start=START,
        end=END,
        files=3,
        malformed_fraction=0.05,
        no_consent_fraction=0.1,
        pii_fraction=0.2,
    )
    assert summary.keys == ["telemetry-000.jsonl", "telemetry-001.jsonl.gz", "telemetry-002.jsonl"]
    lines = lines_of(tmp_path)
    events, bad = parsed(lines)
    assert len(lines) == summary.lines >= 3000
    assert bad == summary.malformed
    assert summary.malformed > 50
    assert len(events) == summary.events
    assert sum(not e.consent for e in events) == summary.no_consent > 100
    assert all(START <= e.timestamp < END for e in events)
    assert set(summary.pii) == {"email", "phone", "card", "ip", "secret"}
    redacted = Counter[str]()
    for line in lines:
        redacted.update(redact_text(line)[1])
    # Every planted PII item is caught by the redactor (malformed lines included).
    for kind, count in summary.pii.items():
        assert redacted[kind] >= count, kind


def test_hidden_quality_separates_better_from_worse() -> None:
    rng = random.Random(0)
    for index in range(300):
        prompt = synthetic_prompt(index)
        better, worse = better_response(rng, prompt), worse_response(rng, prompt)
        assert hidden_quality(better) >= 2
        assert hidden_quality(worse) < 0
        assert len(better) < 300
        assert len(prompt.text) < 300


def test_worse_responses_are_not_just_shorter() -> None:
    rng = random.Random(1)
    prompts = [synthetic_prompt(i) for i in range(400)]
    better = [len(better_response(rng, p)) for p in prompts]
    worse = [len(worse_response(rng, p)) for p in prompts]
    longer_worse = sum(w > b for w, b in zip(worse, better, strict=True))
    assert longer_worse > 40  # a length-only model cannot get everything right


def preferred_quality(events: list[TelemetryEvent]) -> list[float]:
    """Quality difference (preferred - other) of every comparison the users made."""
    out = []
    for e in events:
        if e.comparison is not None:
            this, other = hidden_quality(e.response), hidden_quality(e.comparison.other_response)
            out.append(this - other if e.comparison.choice == "this" else other - this)
    return out


@pytest.mark.parametrize(("flip", "positive_share"), [(0.0, 1.0), (1.0, 0.0)])
def test_flip_fraction_poisons_the_feedback(
    tmp_path: Path, flip: float, positive_share: float
) -> None:
    generate_telemetry(
        open_store(str(tmp_path)),
        events=1500,
        seed=9,
        start=START,
        end=END,
        flip_fraction=flip,
        malformed_fraction=0.0,
    )
    diffs = preferred_quality(parsed(lines_of(tmp_path))[0])
    assert len(diffs) > 100
    assert sum(d > 0 for d in diffs) / len(diffs) == positive_share


def test_golden_pairs_share_the_prompt_pool(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    assert generate_golden(store, "golden/g.jsonl", pairs=25, seed=1) == 25
    rows: list[dict[str, Any]] = [
        json.loads(line) for line in (tmp_path / "golden" / "g.jsonl").read_text().splitlines()
    ]
    assert len({row["prompt_id"] for row in rows}) == 25
    assert all(hidden_quality(r["chosen"]) > hidden_quality(r["rejected"]) for r in rows)
    pool = {synthetic_prompt(i).prompt_id for i in range(100)}
    assert {row["prompt_id"] for row in rows} <= pool


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        generate_telemetry(open_store(str(tmp_path)), events=10, seed=1, start=END, end=START)
