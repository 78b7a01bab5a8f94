"""Fresh-feedback evaluation: after a promotion, do users agree with the promoted model?

The telemetry of ``[since, until)`` becomes preference pairs through the training pipeline
(the same consent filter, redaction and pair rules; no golden set), and every pair is an
evaluation pair: the train/validation split is merged back. A stable sample of at most
``maxPairs`` is scored by the promoted and the previous model with the evaluation code of
``train`` (:func:`rewardops_trainer.evaluate.evaluate_model`). The
:class:`~rewardops_trainer.contract.FeedbackEvaluation` goes to ``resultUri`` in one atomic
write; a pod restarted after that write returns the stored result instead of scoring again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import torch
from pydantic import ValidationError

from rewardops_trainer.config_source import load_config
from rewardops_trainer.contract import (
    FEEDBACK_CONFIG_ENV,
    DataCounts,
    EvalMetrics,
    FeedbackConfig,
    FeedbackEvaluation,
    RunConfig,
    StorageSettings,
)
from rewardops_trainer.errors import ConfigError, DataError
from rewardops_trainer.evaluate import evaluate_model
from rewardops_trainer.model import load_reward_model, resolve_model
from rewardops_trainer.progress import Progress
from rewardops_trainer.run import stop_on_signals
from rewardops_trainer.storage import ObjectStore, open_store
from rewardops_trainer.telemetry.events_reader import telemetry_objects
from rewardops_trainer.telemetry.pipeline import MANIFEST_FILE, build_pairs, input_digest
from rewardops_trainer.train import PairSet, read_pairs


def load_feedback_config(source: str | None) -> FeedbackConfig:
    """The config from ``source`` (``-`` for stdin, an s3:// or file:// URI, or a path) or,
    when ``source`` is None, from the JSON in ``$REWARDOPS_FEEDBACK_CONFIG``."""
    return load_config(FeedbackConfig, source, env=FEEDBACK_CONFIG_ENV, what="feedback config")


@dataclass(frozen=True)
class FreshPairs:
    """The pairs of a feedback window: how many were found, and the sample to score."""

    found: int
    sample: PairSet
    counts: DataCounts
    input_digest: str


def _pair_key(pairs: PairSet, index: int) -> bytes:
    fields = (pairs.prompts[index], pairs.chosen[index], pairs.rejected[index], pairs.rules[index])
    return hashlib.sha256("\0".join(fields).encode()).digest()


def sample_pairs(pairs: PairSet, limit: int) -> PairSet:
    """The ``limit`` pairs with the lowest hash of their texts and rule, in hash order.

    It depends on the pairs alone, not on their order in the files, so the same window gives
    the same sample, and a longer window keeps the pairs of a shorter one that still win.
    """
    order = sorted(range(len(pairs)), key=lambda i: (_pair_key(pairs, i), i))[:limit]
    return PairSet(
        [pairs.prompts[i] for i in order],
        [pairs.chosen[i] for i in order],
        [pairs.rejected[i] for i in order],
        [pairs.weights[i] for i in order],
        [pairs.margins[i] for i in order],
        [pairs.rules[i] for i in order],
    )


def merge_pairs(first: PairSet, second: PairSet) -> PairSet:
    return PairSet(
        first.prompts + second.prompts,
        first.chosen + second.chosen,
        first.rejected + second.rejected,
        first.weights + second.weights,
        first.margins + second.margins,
        first.rules + second.rules,
    )


_NO_PAIRS = PairSet([], [], [], [], [], [])


def _no_events() -> FreshPairs:
    counts = DataCounts(
        events_read=0,
        events_rejected=0,
        events_without_consent=0,
        redactions=0,
        pairs_train=0,
        pairs_validation=0,
    )
    return FreshPairs(0, _NO_PAIRS, counts, input_digest([]))


def build_fresh_pairs(config: FeedbackConfig, out_dir: Path, *, progress: bool) -> FreshPairs:
    """The window's pairs through :func:`build_pairs`, split merged back, then sampled.

    Too few pairs is an answer here, not a data error as in training: the pipeline's own floor
    is lowered to one pair, and when it still finds none its manifest gives the counts. Too
    many malformed lines stays a data error, as in training.
    """
    store = open_store(config.telemetry_uri, config.storage)
    if not telemetry_objects(store):
        # Nothing logged yet is "not enough", like an empty window; the operator asks again.
        return _no_events()
    # build_pairs reads only the window, telemetry, storage and pair settings; the output and
    # model URIs are required by RunConfig but unused here.
    run_config = RunConfig(
        run_id=config.evaluation_id,
        telemetry_uri=config.telemetry_uri,
        since=config.since,
        until=config.until,
        output_uri=config.result_uri,
        base_model_uri=config.promoted_model_uri,
        storage=config.storage,
        pairs=config.pairs.model_copy(update={"min_pairs": 1}),
    )
    try:
        built = build_pairs(run_config, out_dir, progress=progress)
    except DataError:
        manifest = out_dir / MANIFEST_FILE
        if not manifest.is_file():
            raise
        written = json.loads(manifest.read_text(encoding="utf-8"))
        counts = DataCounts.model_validate(written["counts"])
        malformed = counts.events_rejected / max(1, counts.events_read)
        if counts.pairs_train + counts.pairs_validation or (
            malformed > config.pairs.max_rejected_fraction
        ):
            raise
        return FreshPairs(0, _NO_PAIRS, counts, str(written["inputDigest"]))
    every = merge_pairs(read_pairs(built.train_path), read_pairs(built.validation_path))
    return FreshPairs(
        len(every), sample_pairs(every, config.max_pairs), built.counts, built.input_digest
    )


def _result_location(config: FeedbackConfig) -> tuple[ObjectStore, str]:
    uri = config.result_uri
    parsed = urlparse(uri)
    if uri.endswith("/") or (parsed.scheme == "s3" and not parsed.path.strip("/")):
        raise ConfigError(f"resultUri {uri!r} names no object")
    parent, _, name = uri.rpartition("/")
    return open_store(parent or ".", config.storage), name


def _stored_result(
    store: ObjectStore, key: str, config: FeedbackConfig
) -> FeedbackEvaluation | None:
    """The result already at ``resultUri`` when it answers this very evaluation."""
    if not store.exists(key):
        return None
    with store.open_read(key) as stream:
        text = stream.read()
    try:
        stored = FeedbackEvaluation.model_validate_json(text)
    except ValidationError:
        return None  # corrupt or foreign: computed again and replaced
    # The window must match too: an evaluation asked again with a later `until` is a new answer.
    wanted = (config.evaluation_id, config.since, config.until)
    return stored if (stored.evaluation_id, stored.since, stored.until) == wanted else None


def _require_model(uri: str, storage: StorageSettings) -> None:
    """Fail before reading telemetry: a wrong model URI is a permanent error even while the
    window has too few pairs to load the models."""
    if next(iter(open_store(uri, storage).list()), None) is None:
        raise ConfigError(f"model {uri}: no objects there")


def _score(
    uri: str, config: FeedbackConfig, pairs: PairSet, cache: Path, device: torch.device
) -> EvalMetrics:
    model, tokenizer = load_reward_model(resolve_model(uri, config.storage, cache), device)
    return evaluate_model(model, tokenizer, pairs, max_length=config.max_length, device=device)


def execute_feedback(
    config: FeedbackConfig, *, work_dir: Path, progress: bool = False
) -> FeedbackEvaluation:
    """Evaluate ``config``'s window and return the result written to ``resultUri``."""
    say = Progress(enabled=progress)
    results, key = _result_location(config)
    done = _stored_result(results, key, config)
    if done is not None:
        say.log("already_complete", evaluation_id=config.evaluation_id)
        return done

    with stop_on_signals():
        for uri in (config.promoted_model_uri, config.previous_model_uri):
            _require_model(uri, config.storage)
        say.log(
            "stage",
            name="pairs",
            evaluation_id=config.evaluation_id,
            since=config.since.isoformat(),
            until=config.until.isoformat(),
        )
        fresh = build_fresh_pairs(config, work_dir / "data", progress=progress)
        enough = fresh.found >= config.min_pairs
        say.log("pairs", found=fresh.found, sampled=len(fresh.sample), enough=enough)
        promoted = previous = None
        if enough:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            say.log("stage", name="evaluate", pairs=len(fresh.sample), device=str(device))
            cache = work_dir / "models"
            promoted = _score(config.promoted_model_uri, config, fresh.sample, cache, device)
            previous = _score(config.previous_model_uri, config, fresh.sample, cache, device)
        result = FeedbackEvaluation(
            evaluation_id=config.evaluation_id,
            created_at=datetime.now(UTC),
            since=config.since,
            until=config.until,
            events_read=fresh.counts.events_read,
            events_rejected=fresh.counts.events_rejected,
            events_without_consent=fresh.counts.events_without_consent,
            pairs_found=fresh.found,
            pairs_by_rule=fresh.counts.pairs_by_rule,
            min_pairs=config.min_pairs,
            enough=enough,
            promoted=promoted,
            previous=previous,
            input_digest=fresh.input_digest,
        )
        say.log("stage", name="publish", uri=config.result_uri)
        results.write_bytes(key, result.to_json().encode())
    delta = result.agreement_delta
    say.log(
        "summary",
        evaluation_id=config.evaluation_id,
        pairs_found=result.pairs_found,
        promoted_accuracy=round(promoted.accuracy, 4) if promoted else None,
        previous_accuracy=round(previous.accuracy, 4) if previous else None,
        agreement_delta=round(delta, 4) if delta is not None else None,
    )
    return result


def summary_line(result: FeedbackEvaluation) -> str:
    """One line for a person: the pairs found and the agreement of both models."""
    head = f"{result.evaluation_id}: "
    delta = result.agreement_delta
    if result.promoted is None or result.previous is None or delta is None:
        return head + f"not enough fresh pairs: {result.pairs_found} < minPairs {result.min_pairs}"
    return head + (
        f"{result.pairs_found} fresh pairs ({result.promoted.pairs} scored); accuracy "
        f"promoted {result.promoted.accuracy:.4f} vs previous {result.previous.accuracy:.4f}, "
        f"delta {delta:+.4f}"
    )
