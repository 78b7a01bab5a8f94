"""Fresh-feedback evaluation: pairs from a window, both models scored alike, one result."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewardops_trainer import feedback as feedback_module
from rewardops_trainer.cli import main
from rewardops_trainer.contract import (
    FEEDBACK_CONFIG_ENV,
    ExitCode,
    FeedbackConfig,
    FeedbackEvaluation,
    RunConfig,
)
from rewardops_trainer.errors import ConfigError, DataError
from rewardops_trainer.evaluate import evaluate_model
from rewardops_trainer.feedback import (
    build_fresh_pairs,
    execute_feedback,
    merge_pairs,
    sample_pairs,
)
from rewardops_trainer.model import load_reward_model
from rewardops_trainer.storage import open_store
from rewardops_trainer.synthetic import generate_telemetry
from rewardops_trainer.telemetry import build_pairs
from rewardops_trainer.train import PairSet, read_pairs
from tests.support.tiny_models import make_tiny_bert, one_torch_thread

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 2, tzinfo=UTC)
MAX_PAIRS = 120


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A day of synthetic telemetry (300 lines, about 190 pairs) and two tiny models."""
    root = tmp_path_factory.mktemp("feedback")
    generate_telemetry(
        open_store(f"file://{root}/telemetry"), events=300, seed=7, start=SINCE, end=UNTIL
    )
    make_tiny_bert(root / "promoted", seed=1)
    make_tiny_bert(root / "previous", seed=2)
    return root


def _config(sources: Path, tmp_path: Path, **update: object) -> FeedbackConfig:
    values: dict[str, object] = {
        "evaluation_id": "fresh-1",
        "telemetry_uri": f"file://{sources}/telemetry",
        "since": SINCE,
        "until": UNTIL,
        "promoted_model_uri": f"file://{sources}/promoted",
        "previous_model_uri": f"file://{sources}/previous",
        "result_uri": f"file://{tmp_path}/results/fresh-1.json",
        "min_pairs": 50,
        "max_pairs": MAX_PAIRS,
        "max_length": 64,
    }
    values.update(update)
    return FeedbackConfig(**values)


def _stored(config: FeedbackConfig) -> FeedbackEvaluation:
    path = Path(config.result_uri.removeprefix("file://"))
    return FeedbackEvaluation.model_validate_json(path.read_text())


def _without_latency(result: FeedbackEvaluation, side: str) -> dict[str, object]:
    metrics = getattr(result, side)
    assert metrics is not None
    return metrics.model_dump(exclude={"latency_ms_per_pair"})  # type: ignore[no-any-return]


def _all_window_pairs(sources: Path, tmp_path: Path) -> PairSet:
    """The window's pairs as training builds them, both splits together."""
    run = RunConfig(
        run_id="all",
        telemetry_uri=f"file://{sources}/telemetry",
        since=SINCE,
        until=UNTIL,
        output_uri="unused",
        base_model_uri="unused",
        pairs={"min_pairs": 1},
    )
    built = build_pairs(run, tmp_path / "all")
    return merge_pairs(read_pairs(built.train_path), read_pairs(built.validation_path))


def test_enough_pairs_scores_both_models_on_the_same_sample(sources: Path, tmp_path: Path) -> None:
    config = _config(sources, tmp_path)
    result = execute_feedback(config, work_dir=tmp_path / "work")
    assert _stored(config) == result

    every = _all_window_pairs(sources, tmp_path)
    assert result.pairs_found == len(every) > MAX_PAIRS
    assert sum(result.pairs_by_rule.values()) == len(every)
    assert result.enough
    assert result.promoted is not None
    assert result.previous is not None
    assert result.promoted.pairs == result.previous.pairs == MAX_PAIRS
    assert result.events_read == 300

    # The sample: MAX_PAIRS of the window's pairs, the same on every call.
    fresh = build_fresh_pairs(config, tmp_path / "again", progress=False)
    assert fresh.sample == build_fresh_pairs(config, tmp_path / "third", progress=False).sample
    window = set(zip(every.prompts, every.chosen, every.rejected, every.rules, strict=True))
    sample = fresh.sample
    picked = set(zip(sample.prompts, sample.chosen, sample.rejected, sample.rules, strict=True))
    assert len(sample) == MAX_PAIRS
    assert picked <= window

    # Scoring that sample directly with the evaluation code gives the same metrics.
    for side in ("promoted", "previous"):
        model, tokenizer = load_reward_model(sources / side)
        direct = evaluate_model(model, tokenizer, sample, max_length=config.max_length)
        assert direct.model_dump(exclude={"latency_ms_per_pair"}) == _without_latency(result, side)
    assert result.promoted.score_counts is not None
    assert sum(result.promoted.score_counts) == 2 * MAX_PAIRS
    assert result.agreement_delta == result.promoted.accuracy - result.previous.accuracy


def test_sample_depends_on_the_pairs_not_their_order() -> None:
    rng = random.Random(3)
    rows = [(f"p{i}", f"good {i}", f"bad {rng.random()}", rng.choice("ab")) for i in range(200)]

    def pair_set(items: list[tuple[str, str, str, str]]) -> PairSet:
        return PairSet(
            [r[0] for r in items],
            [r[1] for r in items],
            [r[2] for r in items],
            [1.0] * len(items),
            [0.0] * len(items),
            [r[3] for r in items],
        )

    shuffled = rows[:]
    rng.shuffle(shuffled)
    first = sample_pairs(pair_set(rows), 50)
    assert first == sample_pairs(pair_set(shuffled), 50)
    assert len(first) == 50
    # A larger limit keeps the smaller sample and extends it.
    larger = sample_pairs(pair_set(rows), 80)
    assert larger.prompts[:50] == first.prompts
    # Fewer pairs than the limit: all of them.
    assert sorted(sample_pairs(pair_set(rows), 500).prompts) == sorted(r[0] for r in rows)


def _refuse_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("no model may be loaded")

    monkeypatch.setattr(feedback_module, "load_reward_model", refuse)


@pytest.mark.parametrize(
    ("update", "found"),
    [
        # A window after the telemetry: no pair at all.
        ({"since": UNTIL, "until": UNTIL + timedelta(hours=1)}, range(1)),
        # A short window: a few pairs, fewer than minPairs (50) and than training's
        # pairs.minPairs (100), which must not turn into a data error here.
        ({"until": SINCE + timedelta(hours=3)}, range(1, 50)),
        # Every pair of the day, still fewer than minPairs.
        ({"min_pairs": 1000, "max_pairs": 1000}, range(100, 1000)),
    ],
)
def test_too_few_pairs_is_an_answer_without_metrics(
    sources: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    update: dict[str, object],
    found: range,
) -> None:
    _refuse_models(monkeypatch)
    config = _config(sources, tmp_path, **update)
    result = CliRunner().invoke(
        main, ["feedback", "--no-progress"], env={FEEDBACK_CONFIG_ENV: config.to_json()}
    )
    assert result.exit_code == ExitCode.OK, result.output
    stored = _stored(config)
    assert not stored.enough
    assert stored.promoted is None
    assert stored.previous is None
    assert stored.agreement_delta is None
    assert stored.events_read == 300
    assert stored.pairs_found in found
    expected = f"not enough fresh pairs: {stored.pairs_found} < minPairs {config.min_pairs}"
    assert expected in result.stdout
    assert '"promoted"' not in Path(config.result_uri.removeprefix("file://")).read_text()


def test_no_telemetry_yet_is_not_enough(
    sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_models(monkeypatch)
    config = _config(sources, tmp_path, telemetry_uri=f"file://{tmp_path}/empty")
    result = execute_feedback(config, work_dir=tmp_path / "work")
    assert (result.enough, result.events_read, result.pairs_found) == (False, 0, 0)


def test_too_many_malformed_lines_stay_a_data_error(sources: Path, tmp_path: Path) -> None:
    generate_telemetry(
        open_store(f"file://{tmp_path}/broken"),
        events=100,
        seed=1,
        start=SINCE,
        end=UNTIL,
        malformed_fraction=0.5,
    )
    config = _config(sources, tmp_path, telemetry_uri=f"file://{tmp_path}/broken")
    with pytest.raises(DataError, match="malformed"):
        execute_feedback(config, work_dir=tmp_path / "work")
    assert not (tmp_path / "results").exists()


def test_same_model_on_both_sides_gives_a_zero_delta(sources: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(sources / "promoted", twin)
    config = _config(sources, tmp_path, previous_model_uri=f"file://{twin}")
    result = execute_feedback(config, work_dir=tmp_path / "work")
    assert result.agreement_delta == 0.0
    assert _without_latency(result, "promoted") == _without_latency(result, "previous")


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"evaluationId": "Bad_Id"}, "evaluationId"),
        ("{not json", "Invalid JSON"),
        (None, FEEDBACK_CONFIG_ENV),
    ],
)
def test_bad_config_is_exit_code_3_naming_the_field(
    sources: Path, tmp_path: Path, config: dict[str, object] | str | None, named: str
) -> None:
    env = {FEEDBACK_CONFIG_ENV: ""}
    if isinstance(config, dict):
        good = json.loads(_config(sources, tmp_path).to_json())
        env[FEEDBACK_CONFIG_ENV] = json.dumps({**good, **config})
    elif config is not None:
        env[FEEDBACK_CONFIG_ENV] = config
    result = CliRunner().invoke(main, ["feedback"], env=env)
    assert result.exit_code == ExitCode.CONFIG_OR_DATA, result.output
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_from_a_file_names_nested_and_cross_field_problems(
    sources: Path, tmp_path: Path
) -> None:
    good = json.loads(_config(sources, tmp_path).to_json())
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**good, "pairs": {"maxTextChars": 0}, "minPairs": 0}))
    result = CliRunner().invoke(main, ["feedback", "--config", str(path)])
    assert result.exit_code == ExitCode.CONFIG_OR_DATA
    assert "pairs.maxTextChars" in result.stderr
    assert "minPairs" in result.stderr
    path.write_text(json.dumps({**good, "minPairs": 10, "maxPairs": 5}))
    result = CliRunner().invoke(main, ["feedback", "--config", f"file://{path}"])
    assert result.exit_code == ExitCode.CONFIG_OR_DATA
    assert "maxPairs must be at least minPairs" in result.stderr


def test_missing_promoted_model_is_permanent_and_writes_nothing(
    sources: Path, tmp_path: Path
) -> None:
    config = _config(sources, tmp_path, promoted_model_uri=f"file://{tmp_path}/gone")
    with pytest.raises(ConfigError, match="gone"):
        execute_feedback(config, work_dir=tmp_path / "work")
    result = CliRunner().invoke(main, ["feedback", "--config", "-"], config.to_json())
    assert result.exit_code == ExitCode.CONFIG_OR_DATA
    assert f"{tmp_path}/gone" in result.stderr
    assert not (tmp_path / "results").exists()


def test_rerun_returns_the_stored_result_without_models(sources: Path, tmp_path: Path) -> None:
    for side in ("promoted", "previous"):
        shutil.copytree(sources / side, tmp_path / side)
    config = _config(
        sources,
        tmp_path,
        promoted_model_uri=f"file://{tmp_path}/promoted",
        previous_model_uri=f"file://{tmp_path}/previous",
    )
    first = execute_feedback(config, work_dir=tmp_path / "work")
    assert first.enough
    shutil.rmtree(tmp_path / "promoted")
    shutil.rmtree(tmp_path / "previous")
    again = execute_feedback(config, work_dir=tmp_path / "work-2")
    assert again == first  # created_at included: nothing was computed again
    # The same object for another evaluation, or another window, is not an answer to it.
    for update in ({"evaluation_id": "fresh-2"}, {"until": UNTIL + timedelta(hours=1)}):
        with pytest.raises(ConfigError, match="promoted"):
            execute_feedback(config.model_copy(update=update), work_dir=tmp_path / "work-3")


def test_python_m_reads_the_config_from_the_environment(sources: Path, tmp_path: Path) -> None:
    config = _config(sources, tmp_path, min_pairs=1000, max_pairs=1000)
    env = {**os.environ, FEEDBACK_CONFIG_ENV: config.to_json()}
    done = subprocess.run(
        [sys.executable, "-m", "rewardops_trainer", "feedback"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout.startswith("fresh-1: not enough fresh pairs:")
    # Not a terminal: progress goes to stderr as JSON lines, ending with the summary.
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][-1] == "summary"
    assert _stored(config).pairs_found == events[-1]["pairs_found"]
