"""End to end: synthetic telemetry -> pairs -> training -> evaluation -> published run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewardops_trainer.base_models import bundled_minilm
from rewardops_trainer.cli import main
from rewardops_trainer.contract import ExitCode, Hyperparameters, PairSettings, Report, RunConfig
from rewardops_trainer.errors import ConfigError
from rewardops_trainer.model import file_digests, load_reward_model
from rewardops_trainer.run import execute_run
from rewardops_trainer.storage import get_dir, open_store, put_dir
from rewardops_trainer.synthetic import generate_golden, generate_telemetry
from tests.support.tiny_models import make_tiny_bert, one_torch_thread

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 2, tzinfo=UTC)
HP = Hyperparameters(learning_rate=1e-3, batch_size=16, epochs=2, max_length=96, seed=3)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic telemetry, a golden set and a tiny base model on local disk."""
    root = tmp_path_factory.mktemp("sources")
    generate_telemetry(
        open_store(f"file://{root}/telemetry"), events=800, seed=5, start=SINCE, end=UNTIL
    )
    generate_golden(open_store(f"file://{root}/golden"), "golden.jsonl", pairs=30, seed=5)
    make_tiny_bert(root / "base")
    return root


def _config(sources: Path, out: str, **update: object) -> RunConfig:
    values: dict[str, object] = {
        "run_id": "run-1",
        "telemetry_uri": f"file://{sources}/telemetry",
        "golden_uri": f"file://{sources}/golden/golden.jsonl",
        "since": SINCE,
        "until": UNTIL,
        "output_uri": out,
        "base_model_uri": f"file://{sources}/base",
        "baseline_model_uri": f"file://{sources}/base",
        "hyperparameters": HP,
        "pairs": PairSettings(min_pairs=50),
    }
    values.update(update)
    return RunConfig(**values)


def test_run_publishes_model_pairs_and_a_valid_report(sources: Path, tmp_path: Path) -> None:
    config = _config(sources, f"file://{tmp_path}/out")
    report = execute_run(config, work_dir=tmp_path / "work", progress=False)
    run = tmp_path / "out" / "run-1"
    assert Report.model_validate_json((run / "report.json").read_text()) == report
    # Every published file is listed with its digest, and the digests are right.
    published = file_digests(run)
    published.pop("report.json")
    assert report.artifacts == published
    assert "model/model.safetensors" in published
    assert {"pairs/train.jsonl", "pairs/validation.jsonl", "manifest.json"} <= set(published)
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").rglob("*.*"))
    # The candidate learned; the baseline (the untrained base) was measured on the same pairs.
    assert report.baseline is not None
    assert report.candidate.golden is not None
    assert report.baseline.golden is not None
    assert report.candidate.held_out.pairs == report.baseline.held_out.pairs > 0
    assert report.candidate.golden.pairs == 30
    assert report.candidate.held_out.accuracy > report.baseline.held_out.accuracy
    assert report.candidate.held_out.accuracy >= 0.75
    assert set(report.candidate.held_out.slices) == set(report.baseline.held_out.slices)
    assert report.lineage.config_digest == config.digest()
    assert report.training.steps > 0
    assert report.training.resumed_from_step is None
    assert set(report.timings) >= {"pairs", "train", "evaluate", "publish"}
    # The published model loads and scores like serving will.
    model, _ = load_reward_model(run / "model")
    assert model.config.num_labels == 1
    # A restarted pod finds the report and does not train again.
    again = execute_run(config, work_dir=tmp_path / "work2", progress=False)
    assert again == report


def test_failed_run_leaves_no_report(sources: Path, tmp_path: Path) -> None:
    config = _config(sources, f"file://{tmp_path}/out", base_model_uri=f"file://{tmp_path}/none")
    with pytest.raises(ConfigError, match="none"):
        execute_run(config, work_dir=tmp_path / "work", progress=False)
    assert not (tmp_path / "out" / "run-1" / "report.json").exists()


def test_corrupt_base_model_is_exit_code_3(sources: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in (sources / "base").iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "model.safetensors").write_bytes(b"truncated")
    config = _config(sources, f"file://{tmp_path}/out", base_model_uri=str(broken))
    result = CliRunner().invoke(main, ["train", "--config", "-", "--no-progress"], config.to_json())
    assert result.exit_code == ExitCode.CONFIG_OR_DATA, result.output
    assert "cannot load the weights" in result.output
    assert not (tmp_path / "out" / "run-1" / "report.json").exists()


def test_cli_rejects_a_bad_config_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"runId": "Bad_Id"}))
    result = CliRunner().invoke(main, ["train", "--config", str(path)])
    assert result.exit_code == ExitCode.CONFIG_OR_DATA
    assert "runId" in result.output
    result = CliRunner().invoke(main, ["train"], env={"REWARDOPS_RUN_CONFIG": ""})
    assert result.exit_code == ExitCode.CONFIG_OR_DATA
    assert "REWARDOPS_RUN_CONFIG" in result.output


def test_run_against_s3(sources: Path, tmp_path: Path, bucket: str) -> None:
    store = open_store(f"s3://{bucket}")
    put_dir(store, "telemetry", sources / "telemetry")
    put_dir(store, "models/base", sources / "base")
    store.put_file("golden/golden.jsonl", sources / "golden" / "golden.jsonl")
    config = _config(
        sources,
        f"s3://{bucket}/runs",
        telemetry_uri=f"s3://{bucket}/telemetry",
        golden_uri=f"s3://{bucket}/golden/golden.jsonl",
        base_model_uri=f"s3://{bucket}/models/base",
        baseline_model_uri=f"s3://{bucket}/models/base",
        hyperparameters=HP.model_copy(update={"epochs": 1}),
    )
    report = execute_run(config, work_dir=tmp_path / "work", progress=False)
    fetched = tmp_path / "fetched"
    get_dir(store, "runs/run-1", fetched)
    assert Report.model_validate_json((fetched / "report.json").read_text()) == report
    digests = file_digests(fetched)
    assert all(digests[name] == digest for name, digest in report.artifacts.items())
    assert not any(name.startswith("checkpoints/") for name in digests)


@pytest.mark.slow
def test_sigterm_checkpoints_exits_130_and_the_rerun_resumes(sources: Path, tmp_path: Path) -> None:
    # Long enough (about 150 steps) that the signal lands mid-training even on a busy machine.
    config = _config(
        sources, f"file://{tmp_path}/out", hyperparameters=HP.model_copy(update={"epochs": 8})
    )
    env = {**os.environ, "REWARDOPS_RUN_CONFIG": config.to_json(), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rewardops_trainer", "train", "--progress"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if '"stage"' in line and '"train"' in line:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == ExitCode.INTERRUPTED
    run = tmp_path / "out" / "run-1"
    stopped_at = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    assert stopped_at >= 1
    assert not (run / "report.json").exists()

    report = execute_run(config, work_dir=tmp_path / "rerun", progress=False)
    assert report.training.resumed_from_step == stopped_at
    assert (run / "report.json").is_file()


@pytest.mark.slow
def test_minilm_learns_the_planted_preference(sources: Path, tmp_path: Path) -> None:
    """The real pretrained encoder recovers the generator's preference from telemetry."""
    config = _config(
        sources,
        f"file://{tmp_path}/out",
        base_model_uri=str(bundled_minilm()),
        baseline_model_uri=None,
        hyperparameters=Hyperparameters(
            learning_rate=8e-5, batch_size=16, max_steps=12, max_length=80, seed=1
        ),
    )
    report = execute_run(config, work_dir=tmp_path / "work", progress=False)
    assert report.candidate.held_out.pairs >= 50
    assert report.candidate.held_out.accuracy >= 0.8
    assert report.candidate.golden is not None
    assert report.candidate.golden.accuracy >= 0.8
