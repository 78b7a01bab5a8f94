"""Pairs from a real S3 server: gzip and plain telemetry in, pairs, rejects and manifest out
through the `pairs` command."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewardops_trainer.cli import main
from rewardops_trainer.contract import PairSettings, RunConfig
from rewardops_trainer.contract.exit_codes import ExitCode
from rewardops_trainer.storage import open_store
from rewardops_trainer.synthetic import generate_golden, generate_telemetry
from rewardops_trainer.telemetry import build_pairs

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 3, tzinfo=UTC)


@pytest.fixture
def telemetry(bucket: str) -> str:
    uri = f"s3://{bucket}/telemetry"
    summary = generate_telemetry(open_store(uri), events=1500, seed=11, start=START, end=END)
    assert any(key.endswith(".gz") for key in summary.keys)
    assert any(key.endswith(".jsonl") for key in summary.keys)
    generate_golden(open_store(f"s3://{bucket}"), "golden/golden.jsonl", pairs=10, seed=2)
    return uri


def test_build_pairs_reads_gzip_and_plain_from_s3(
    telemetry: str, bucket: str, tmp_path: Path
) -> None:
    config = RunConfig(
        run_id="s3",
        telemetry_uri=telemetry,
        since=START,
        until=END,
        output_uri="unused",
        base_model_uri="unused",
        golden_uri=f"s3://{bucket}/golden/golden.jsonl",
        pairs=PairSettings(min_pairs=50),
    )
    result = build_pairs(config, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    keys = [entry["key"] for entry in manifest["inputs"]]
    assert keys == [info.key for info in open_store(telemetry).list()]
    assert all(entry["etag"] and entry["size"] > 0 for entry in manifest["inputs"])
    assert result.counts.events_read >= 1500
    assert result.counts.pairs_golden == 10
    # Local and S3 reads of the same bytes give the same pairs.
    local = tmp_path / "copy"
    for info in open_store(telemetry).list():
        open_store(telemetry).get_file(info.key, local / info.key)
    again = build_pairs(config.model_copy(update={"telemetry_uri": str(local)}), tmp_path / "l")
    assert again.counts == result.counts
    assert again.train_path.read_bytes() == result.train_path.read_bytes()


def test_pairs_command_writes_results_back_to_s3(telemetry: str, bucket: str) -> None:
    out = f"s3://{bucket}/runs/pairs-1"
    result = CliRunner().invoke(
        main,
        [
            "pairs",
            "--telemetry",
            telemetry,
            "--since",
            "2026-01-01T00:00:00Z",
            "--until",
            "2026-01-03",
            "--out",
            out,
            "--golden",
            f"s3://{bucket}/golden/golden.jsonl",
            "--min-pairs",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    store = open_store(out)
    keys = {info.key for info in store.list()}
    assert keys == {
        "manifest.json",
        "rejected.jsonl",
        "pairs/train.jsonl",
        "pairs/validation.jsonl",
        "pairs/golden.jsonl",
    }
    with store.open_read("manifest.json") as stream:
        manifest = json.loads(stream.read())
    assert manifest["pairsDigest"] == summary["pairsDigest"]
    assert manifest["counts"] == summary["counts"]
    with store.open_read("rejected.jsonl") as stream:
        rejected = [json.loads(line) for line in stream.read().splitlines()]
    assert len(rejected) == summary["counts"]["eventsRejected"] > 0
    assert "pairs" in result.stderr  # progress


def test_a_data_failure_still_publishes_rejects_and_manifest(telemetry: str, bucket: str) -> None:
    out = f"s3://{bucket}/runs/too-strict"
    result = CliRunner().invoke(
        main,
        [
            "pairs",
            "--telemetry",
            telemetry,
            "--since",
            "2026-01-01",
            "--until",
            "2026-01-03",
            "--out",
            out,
            "--max-rejected-fraction",
            "0",
            "--no-progress",
        ],
    )
    assert result.exit_code == ExitCode.CONFIG_OR_DATA
    assert "malformed" in result.stderr
    assert "maxRejectedFraction" in result.stderr
    store = open_store(out)
    assert store.exists("rejected.jsonl")
    assert store.exists("manifest.json")
