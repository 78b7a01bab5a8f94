"""build_pairs end to end on local files: counts, privacy, golden exclusion, split, lineage,
determinism, the window, and the clear errors for bad or thin data."""

from __future__ import annotations

import gc
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from rewardops_trainer.contract import PairSettings, RunConfig
from rewardops_trainer.errors import DataError
from rewardops_trainer.storage import ObjectInfo, open_store
from rewardops_trainer.synthetic import (
    GenerationSummary,
    generate_golden,
    generate_telemetry,
    hidden_quality,
)
from rewardops_trainer.telemetry import PairsResult, build_pairs, pipeline
from rewardops_trainer.telemetry.pipeline import _gc_paused, pair_line, partition_count
from rewardops_trainer.telemetry.rules import Pair
from rewardops_trainer.telemetry.split import split_of

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 8, tzinfo=UTC)
PAIR_KEYS = {"prompt", "chosen", "rejected", "weight", "margin", "rule", "prompt_id"}


def config(telemetry: Path, **overrides: Any) -> RunConfig:
    fields: dict[str, Any] = {
        "run_id": "t",
        "telemetry_uri": str(telemetry),
        "since": START,
        "until": END,
        "output_uri": "unused",
        "base_model_uri": "unused",
        "pairs": PairSettings(min_pairs=10),
    }
    fields.update(overrides)
    return RunConfig(**fields)


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class Built:
    telemetry: Path
    golden: Path
    summary: GenerationSummary
    result: PairsResult


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("pipeline")
    summary = generate_telemetry(
        open_store(str(root / "telemetry")),
        events=4000,
        seed=3,
        start=START,
        end=END,
        malformed_fraction=0.02,
        pii_fraction=0.1,
    )
    generate_golden(open_store(str(root / "golden")), "golden.jsonl", pairs=30, seed=4)
    cfg = config(root / "telemetry", golden_uri=str(root / "golden" / "golden.jsonl"))
    result = build_pairs(cfg, root / "out")
    return Built(root / "telemetry", root / "golden" / "golden.jsonl", summary, result)


def all_output_text(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(out.rglob("*")) if p.is_file())


def test_counts_match_the_input_and_the_files(built: Built) -> None:
    counts, summary = built.result.counts, built.summary
    assert counts.events_read == summary.lines
    assert counts.events_rejected == summary.malformed
    assert counts.events_without_consent == summary.no_consent
    assert counts.pairs_train == len(rows(built.result.train_path))
    assert counts.pairs_validation == len(rows(built.result.validation_path))
    assert counts.pairs_train > 100
    assert counts.pairs_validation > 0
    assert sum(counts.pairs_by_rule.values()) == counts.pairs_train + counts.pairs_validation
    assert all(counts.pairs_by_rule[rule] > 0 for rule in ("comparison", "thumbs", "correction"))


def test_rejects_are_kept_with_file_line_and_reason(built: Built) -> None:
    rejected = rows(built.result.out_dir / "rejected.jsonl")
    assert len(rejected) == built.summary.malformed
    for row in rejected:
        assert row["file"] in built.summary.keys
        assert row["line"] >= 1
        assert row["reason"]
        line = _line(built.telemetry / row["file"], row["line"])
        with pytest.raises(ValidationError):  # the line really is bad
            _strict_event(line)


def _line(path: Path, number: int) -> str:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as stream:
        for index, line in enumerate(stream, start=1):
            if index == number:
                return str(line)
    raise AssertionError(f"{path} has no line {number}")


def _strict_event(line: str) -> None:
    from rewardops_trainer.contract.events import TelemetryEvent

    TelemetryEvent.model_validate_json(line)


def test_no_pii_and_no_user_id_is_written(built: Built) -> None:
    text = all_output_text(built.result.out_dir)
    assert "@example.com" not in text
    assert "sk-live-" not in text
    assert "415-555-" not in text
    assert "203.0.113." not in text
    assert not re.search(r"\d{4} \d{4} \d{4} \d{4}", text)
    manifest = json.loads((built.result.out_dir / "manifest.json").read_text())
    assert all(
        manifest["redactions"][kind] > 0 for kind in ("email", "phone", "card", "ip", "secret")
    )
    assert built.result.counts.redactions == sum(manifest["redactions"].values())
    users = set()
    for path in built.telemetry.iterdir():
        users.update(re.findall(r'"user_id_hash": "([0-9a-f]+)"', _read(path)))
    assert users
    assert not any(user in text for user in users)


def _read(path: Path) -> str:
    import gzip

    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode()


def test_golden_prompts_never_reach_training(built: Built) -> None:
    golden = rows(built.golden)
    ids = {row["prompt_id"] for row in golden}
    texts = {row["prompt"] for row in golden}
    trained = rows(built.result.train_path) + rows(built.result.validation_path)
    assert not any(row["prompt_id"] in ids or row["prompt"] in texts for row in trained)
    manifest = json.loads((built.result.out_dir / "manifest.json").read_text())
    assert manifest["events"]["goldenPrompt"] > 0  # the golden prompts did occur in telemetry
    assert built.result.golden_path is not None
    written = rows(built.result.golden_path)
    assert len(written) == built.result.counts.pairs_golden == 30
    assert all(set(row) == PAIR_KEYS and row["rule"] == "golden" for row in written)


def test_split_is_by_prompt_and_pairs_are_well_formed(built: Built) -> None:
    train, validation = rows(built.result.train_path), rows(built.result.validation_path)
    assert not {r["prompt_id"] for r in train} & {r["prompt_id"] for r in validation}
    for split, pairs in (("train", train), ("validation", validation)):
        for row in pairs:
            assert set(row) == PAIR_KEYS
            assert row["chosen"] != row["rejected"]
            assert split_of(row["prompt_id"], 0.1) == split
    per_prompt: dict[str, int] = {}
    for row in train + validation:
        per_prompt[row["prompt_id"]] = per_prompt.get(row["prompt_id"], 0) + 1
    assert max(per_prompt.values()) <= PairSettings().max_pairs_per_prompt


def test_pairs_follow_the_planted_preference(built: Built) -> None:
    pairs = rows(built.result.train_path)
    inverted = [r for r in pairs if hidden_quality(r["chosen"]) < hidden_quality(r["rejected"])]
    # Explicit feedback follows the planted preference exactly; the weaker rules may pair two
    # worse responses with each other, which is noise, not an inversion of the preference.
    assert not [r for r in inverted if r["rule"] not in ("reported_wrong", "implicit")]
    assert len(inverted) / len(pairs) < 0.03


def test_manifest_carries_the_lineage(built: Built) -> None:
    out = built.result.out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    listed = list(open_store(str(built.telemetry)).list())
    assert manifest["inputs"] == [{"key": o.key, "size": o.size, "etag": o.etag} for o in listed]
    assert manifest["inputDigest"] == built.result.input_digest
    assert manifest["pairsDigest"] == built.result.pairs_digest
    for name, digest in manifest["outputs"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert manifest["window"] == {"since": START.isoformat(), "until": END.isoformat()}
    assert manifest["counts"]["pairsTrain"] == built.result.counts.pairs_train
    assert manifest["rules"]["implicit"] == {"weight": 0.2, "margin": 0.1}
    assert manifest["rejects"]["byKind"]
    assert not list(out.glob(".spill-*")), "spill files must be cleaned up"


def test_same_input_gives_the_same_pairs(built: Built, tmp_path: Path) -> None:
    again = build_pairs(config(built.telemetry, golden_uri=str(built.golden)), tmp_path / "again")
    assert again.pairs_digest == built.result.pairs_digest
    assert again.train_path.read_bytes() == built.result.train_path.read_bytes()


@pytest.mark.slow
def test_worker_processes_do_not_change_the_output(built: Built, tmp_path: Path) -> None:
    parallel = build_pairs(
        config(built.telemetry, golden_uri=str(built.golden)), tmp_path / "par", workers=2
    )
    assert parallel.pairs_digest == built.result.pairs_digest
    assert parallel.counts == built.result.counts


def event(number: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": f"e-{number}",
        "timestamp": (START + timedelta(minutes=number)).isoformat(),
        "session_id": f"s-{number}",
        "user_id_hash": "uh",
        "consent": True,
        "prompt_id": f"p-{number}",
        "prompt": f"question {number}",
        "response_id": f"r-{number}",
        "response": f"answer {number}",
        "model_version": "m",
        "correction": f"better answer {number}",
    }
    fields.update(overrides)
    return fields


def write(path: Path, lines: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "events.jsonl").write_text("".join(line + "\n" for line in lines))
    return path


def test_window_is_half_open(tmp_path: Path) -> None:
    telemetry = write(
        tmp_path / "t",
        [
            json.dumps(event(1, timestamp=START.isoformat())),
            json.dumps(event(2, timestamp=(START - timedelta(seconds=1)).isoformat())),
            json.dumps(event(3, timestamp=END.isoformat())),
            json.dumps(event(4, timestamp=(END - timedelta(seconds=1)).isoformat())),
            json.dumps(event(5, consent=False)),
        ],
    )
    result = build_pairs(config(telemetry, pairs=PairSettings(min_pairs=1)), tmp_path / "o")
    prompts = sorted(r["prompt_id"] for r in rows(result.train_path) + rows(result.validation_path))
    assert prompts == ["p-1", "p-4"]
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["events"]["outsideWindow"] == 2
    assert result.counts.events_without_consent == 1


def test_a_timestamp_rounded_onto_a_bound_is_placed_as_the_model_places_it(
    tmp_path: Path,
) -> None:
    # msgspec rounds a 7th fractional digit onto the bound; pydantic truncates it, which
    # puts the first event just before END (in) and the second just before START (out).
    telemetry = write(
        tmp_path / "t",
        [
            json.dumps(event(1, timestamp="2026-01-07T23:59:59.9999999Z")),
            json.dumps(event(2, timestamp="2025-12-31T23:59:59.9999999Z")),
        ],
    )
    result = build_pairs(config(telemetry, pairs=PairSettings(min_pairs=1)), tmp_path / "o")
    prompts = [r["prompt_id"] for r in rows(result.train_path) + rows(result.validation_path)]
    assert prompts == ["p-1"]
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["events"]["outsideWindow"] == 1


def test_integers_past_64_bits_go_through_the_spill(tmp_path: Path) -> None:
    # The model accepts any dwell_ms; msgpack holds 64 bits, so such rows are spilled as JSON.
    long_dwell = {"correction": None, "prompt_id": "p", "prompt": "q"}
    telemetry = write(
        tmp_path / "t",
        [
            json.dumps(event(1, dwell_ms=10**30, **long_dwell)),
            json.dumps(event(2, dwell_ms=10**30 - 10**6, **long_dwell)),
        ],
    )
    result = build_pairs(config(telemetry, pairs=PairSettings(min_pairs=1)), tmp_path / "o")
    assert [(r["chosen"], r["rejected"], r["rule"]) for r in rows(result.train_path)] + [
        (r["chosen"], r["rejected"], r["rule"]) for r in rows(result.validation_path)
    ] == [("answer 1", "answer 2", "implicit")]


texts = st.text(max_size=40)
numbers = st.floats() | st.sampled_from([0.0, -0.0, 1e-7, 1e22, 0.1 + 0.2])


@given(st.builds(Pair, texts, texts, texts, texts, numbers, numbers, texts))
def test_a_pair_line_is_json_dumps_of_its_row(pair: Pair) -> None:
    expected = json.dumps(pair.to_row(), ensure_ascii=False) + "\n"
    assert pair_line(pair) == expected.encode()


def test_too_many_rejects_fail_with_the_first_bad_line(tmp_path: Path) -> None:
    lines = [json.dumps(event(i)) for i in range(8)] + ["{oops", "nope"]
    telemetry = write(tmp_path / "t", lines)
    with pytest.raises(DataError, match=r"2 of 10 telemetry lines.*events\.jsonl line 9"):
        build_pairs(
            config(telemetry, pairs=PairSettings(min_pairs=1, max_rejected_fraction=0.1)),
            tmp_path / "o",
        )
    assert len(rows(tmp_path / "o" / "rejected.jsonl")) == 2
    assert (tmp_path / "o" / "manifest.json").exists()


def test_too_few_pairs_is_a_specific_error(tmp_path: Path) -> None:
    telemetry = write(tmp_path / "t", [json.dumps(event(i)) for i in range(3)])
    with pytest.raises(DataError, match=r"only 3 preference pairs .*pairs\.minPairs 50"):
        build_pairs(config(telemetry, pairs=PairSettings(min_pairs=50)), tmp_path / "o")


def test_no_telemetry_objects_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "readme.txt").write_text("not telemetry")
    with pytest.raises(DataError, match="no telemetry objects"):
        build_pairs(config(tmp_path / "t"), tmp_path / "o")


def test_a_bad_golden_line_names_the_line(tmp_path: Path) -> None:
    telemetry = write(tmp_path / "t", [json.dumps(event(i)) for i in range(3)])
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q"}\n')
    with pytest.raises(DataError, match=r"golden\.jsonl line 2: chosen"):
        build_pairs(config(telemetry, golden_uri=str(golden)), tmp_path / "o")


def test_a_hot_prompt_is_read_only_up_to_its_bound(tmp_path: Path) -> None:
    hot = [
        json.dumps(
            event(
                i,
                prompt_id="p-hot",
                prompt="hot",
                response_id=f"r-{i}",
                correction=None,
                thumb="up" if i % 2 else "down",
            )
        )
        for i in range(100)
    ]
    telemetry = write(tmp_path / "t", hot)
    settings = PairSettings(min_pairs=1, max_pairs_per_prompt=1)
    result = build_pairs(config(telemetry, pairs=settings), tmp_path / "o")
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["events"]["hotPromptDropped"] == 100 - 64
    assert result.counts.pairs_train + result.counts.pairs_validation == 1


def hot_prompt_telemetry(path: Path) -> Path:
    """Two objects of 80 events each of one hot prompt: comparisons first, then thumbs.

    With one pair a prompt, pass 2 reads its first 64 events in input order: the first 64
    lines of a.jsonl, all comparisons. Any later event read would add a thumbs candidate.
    """

    def hot(number: int, **feedback: Any) -> str:
        fields = event(number, prompt_id="p-hot", prompt="hot", correction=None, **feedback)
        return json.dumps(fields)

    comparisons = [
        hot(
            i,
            comparison={
                "other_response_id": f"o-{i}",
                "other_response": f"other {i}",
                "choice": "this",
            },
        )
        for i in range(64)
    ]
    thumbs = [
        hot(i, response_id="r-up" if i % 2 else "r-down", thumb="up" if i % 2 else "down")
        for i in range(64, 160)
    ]
    path.mkdir(parents=True)
    lines = comparisons + thumbs
    (path / "a.jsonl").write_text("".join(line + "\n" for line in lines[:80]))
    (path / "b.jsonl").write_text("".join(line + "\n" for line in lines[80:]))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_hot_prompt_spread_over_objects_reads_its_first_events_in_input_order(
    tmp_path: Path, workers: int
) -> None:
    # Each process spills only the first 64 events of a prompt it reads, and counts the rest.
    telemetry = hot_prompt_telemetry(tmp_path / "t")
    settings = PairSettings(min_pairs=1, max_pairs_per_prompt=1)
    result = build_pairs(config(telemetry, pairs=settings), tmp_path / "o", workers=workers)
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["events"]["kept"] == 160
    assert manifest["events"]["hotPromptDropped"] == 160 - 64
    assert manifest["candidatesByRule"]["comparison"] == 64
    assert manifest["candidatesByRule"]["thumbs"] == 0
    assert manifest["dropped"]["over_cap"] == 63
    assert result.counts.pairs_by_rule["comparison"] == 1


def test_forgetting_which_prompts_are_hot_changes_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry = hot_prompt_telemetry(tmp_path / "t")
    # Another prompt between the hot one's events, so that a memory of one prompt forgets.
    with (telemetry / "a.jsonl").open("a") as stream:
        stream.writelines(json.dumps(event(1000 + i)) + "\n" for i in range(5))
    settings = PairSettings(min_pairs=1, max_pairs_per_prompt=1)
    remembered = build_pairs(config(telemetry, pairs=settings), tmp_path / "a", workers=1)
    monkeypatch.setattr(pipeline, "MAX_REMEMBERED_PROMPTS", 1)
    forgetful = build_pairs(config(telemetry, pairs=settings), tmp_path / "b", workers=1)
    assert forgetful.pairs_digest == remembered.pairs_digest
    for name in ("manifest.json", "pairs/train.jsonl", "pairs/validation.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_partitions_grow_with_the_input() -> None:
    def objects(total: int) -> list[ObjectInfo]:
        return [ObjectInfo("a.jsonl", total // 2, "e"), ObjectInfo("b.jsonl.gz", total // 12, "e")]

    small, large, huge = (partition_count(objects(n)) for n in (1 << 20, 1 << 30, 1 << 40))
    assert small == 4
    assert large == 64
    assert huge == 512


def test_pass_two_gives_the_garbage_collector_back_as_it_was() -> None:
    def fail_while_paused() -> None:
        with _gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("pass 2 failed")

    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="pass 2 failed"):
        fail_while_paused()
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
