"""One trainer run: run config -> pairs -> train -> evaluate -> publish.

Everything lands under ``<outputUri>/<runId>/``: ``model/`` (safetensors, config, tokenizer),
``pairs/``, ``rejected.jsonl``, ``manifest.json`` and, written last, ``report.json``. A run
that fails at any point leaves no report, and the operator trusts nothing else. A restarted
Job pod resumes training from ``checkpoints/`` (deleted once the report is written), and a pod
restarted after the report was written returns that report instead of training again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import torch

from rewardops_trainer import __version__
from rewardops_trainer.checkpoint import Checkpointer
from rewardops_trainer.config_source import load_config
from rewardops_trainer.contract import (
    RUN_CONFIG_ENV,
    Lineage,
    ModelEvaluation,
    Report,
    RunConfig,
    TrainingSummary,
)
from rewardops_trainer.contract.report import MANIFEST_FILE, MODEL_DIR, REPORT_FILE
from rewardops_trainer.evaluate import evaluate_model
from rewardops_trainer.model import (
    directory_digest,
    file_digests,
    file_sha256,
    load_reward_model,
    resolve_model,
    save_reward_model,
)
from rewardops_trainer.progress import Progress
from rewardops_trainer.storage import ObjectStore, join_uri, open_store, put_dir
from rewardops_trainer.train import (
    Distributed,
    PairSet,
    TrainOptions,
    read_pairs,
    train_reward_model,
)

CHECKPOINT_PREFIX = "checkpoints"
PAIRS_PREFIX = "pairs"
REJECTED_FILE = "rejected.jsonl"


def load_run_config(source: str | None) -> RunConfig:
    """The run config from ``source`` (``-`` for stdin, an s3:// or file:// URI, or a path) or,
    when ``source`` is None, from the JSON in ``$REWARDOPS_RUN_CONFIG``."""
    return load_config(RunConfig, source, env=RUN_CONFIG_ENV, what="run config")


class StopFlag:
    """Set by SIGTERM/SIGINT. While training runs, the loop checkpoints and stops at the next
    step boundary; at any other time the signal interrupts at once, as usual."""

    def __init__(self) -> None:
        self.requested = False
        self.training = False

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.training and not flag.requested:
            flag.requested = True
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def pick_device(dist: Distributed) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank)
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def _fingerprint(config: RunConfig, pairs_digest: str, base_digest: str) -> str:
    """What a checkpoint must match to be resumed: the same pairs, base model and settings."""
    parts = [pairs_digest, base_digest, config.hyperparameters.to_json()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _evaluate(
    uri: str,
    model_dir: Path,
    sets: dict[str, PairSet | None],
    config: RunConfig,
    device: torch.device,
) -> ModelEvaluation:
    model, tokenizer = load_reward_model(model_dir, device)
    max_length = config.hyperparameters.max_length
    metrics = {
        name: evaluate_model(model, tokenizer, pairs, max_length=max_length, device=device)
        if pairs is not None
        else None
        for name, pairs in sets.items()
    }
    held_out = metrics["held_out"]
    assert held_out is not None  # the validation set is always there
    return ModelEvaluation(model_uri=uri, held_out=held_out, golden=metrics["golden"])


def _existing_report(store: ObjectStore) -> Report | None:
    if not store.exists(REPORT_FILE):
        return None
    with store.open_read(REPORT_FILE) as stream:
        return Report.model_validate_json(stream.read())


def execute_run(config: RunConfig, *, work_dir: Path, progress: bool) -> Report:
    """Run ``config`` end to end and return the published report."""
    from rewardops_trainer.telemetry import build_pairs

    say = Progress(enabled=progress)
    store = open_store(config.run_uri, config.storage)
    done = _existing_report(store)
    if done is not None:
        say.log("already_complete", run_id=config.run_id)
        return done

    dist = Distributed.from_env()
    if dist.world > 1:
        import torch.distributed

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        work_dir = work_dir / f"rank-{dist.rank}"
    device = pick_device(dist)
    timings: dict[str, float] = {}
    hp = config.hyperparameters

    with stop_on_signals() as stop:
        began = time.perf_counter()
        say.log("stage", name="pairs", run_id=config.run_id)
        # Every rank builds the same pairs (deterministic), so no rank waits on another's files.
        pairs = build_pairs(config, work_dir / "data", progress=progress)
        timings["pairs"] = time.perf_counter() - began

        began = time.perf_counter()
        models = work_dir / "models"
        base_dir = resolve_model(config.base_model_uri, config.storage, models)
        base_digest = directory_digest(base_dir)
        model, tokenizer = load_reward_model(base_dir, device)
        train_set = read_pairs(pairs.train_path)
        timings["load"] = time.perf_counter() - began

        say.log("stage", name="train", pairs=len(train_set), device=str(device))
        checkpointer = Checkpointer(
            open_store(join_uri(config.run_uri, CHECKPOINT_PREFIX), config.storage),
            "",
            _fingerprint(config, pairs.pairs_digest, base_digest),
        )
        options = TrainOptions(
            device=device,
            checkpointer=checkpointer,
            progress=say,
            should_stop=stop,
            distributed=dist,
        )
        stop.training = True
        trained, summary = train_reward_model(model, tokenizer, train_set, hp, options)
        stop.training = False
        timings["train"] = summary.seconds
        say.log(
            "trained",
            steps=summary.steps,
            final_loss=round(summary.final_loss, 6),
            pairs_per_s=round(summary.pairs_per_second, 2),
            resumed_from_step=summary.resumed_from_step,
        )
        if not dist.is_main:
            import torch.distributed

            torch.distributed.barrier()  # rank 0 evaluates and publishes
            report = _existing_report(store)
            if report is None:
                raise RuntimeError("rank 0 finished without a report")
            return report

        began = time.perf_counter()
        out_model = work_dir / MODEL_DIR
        save_reward_model(trained, tokenizer, out_model)
        del trained, model
        sets: dict[str, PairSet | None] = {
            "held_out": read_pairs(pairs.validation_path),
            "golden": read_pairs(pairs.golden_path) if pairs.golden_path else None,
        }
        say.log("stage", name="evaluate")
        candidate = _evaluate(join_uri(config.run_uri, MODEL_DIR), out_model, sets, config, device)
        baseline = None
        if config.baseline_model_uri:
            baseline_dir = resolve_model(config.baseline_model_uri, config.storage, models)
            baseline = _evaluate(config.baseline_model_uri, baseline_dir, sets, config, device)
        timings["evaluate"] = time.perf_counter() - began

        began = time.perf_counter()
        say.log("stage", name="publish", uri=config.run_uri)
        artifacts = {f"{MODEL_DIR}/{k}": v for k, v in file_digests(out_model).items()}
        pairs_dir = pairs.train_path.parent
        artifacts.update({f"{PAIRS_PREFIX}/{k}": v for k, v in file_digests(pairs_dir).items()})
        put_dir(store, MODEL_DIR, out_model)
        put_dir(store, PAIRS_PREFIX, pairs_dir)
        for name in (REJECTED_FILE, MANIFEST_FILE):
            path = pairs.out_dir / name
            if path.is_file():
                artifacts[name] = file_sha256(path)
                store.put_file(name, path)
        timings["publish"] = time.perf_counter() - began

        report = Report(
            run_id=config.run_id,
            created_at=datetime.now(UTC),
            candidate=candidate,
            baseline=baseline,
            data=pairs.counts,
            training=TrainingSummary(
                steps=summary.steps,
                epochs=summary.epochs,
                final_loss=summary.final_loss,
                pairs_per_second=summary.pairs_per_second,
                device=summary.device,
                resumed_from_step=summary.resumed_from_step,
            ),
            lineage=Lineage(
                telemetry_uri=config.telemetry_uri,
                since=config.since,
                until=config.until,
                input_digest=pairs.input_digest,
                pairs_digest=pairs.pairs_digest,
                config_digest=config.digest(),
                base_model_uri=config.base_model_uri,
                base_model_digest=base_digest,
                code_version=__version__,
            ),
            artifacts=artifacts,
            timings={k: round(v, 3) for k, v in timings.items()},
        )
        # Last write of the run: its presence tells the operator the run is complete.
        store.write_bytes(REPORT_FILE, report.to_json().encode())
        if dist.world > 1:
            import torch.distributed

            torch.distributed.barrier()
        for info in list(store.list(CHECKPOINT_PREFIX + "/")):
            store.delete(info.key)
        say.log(
            "summary",
            run_id=config.run_id,
            candidate_accuracy=round(candidate.held_out.accuracy, 4),
            baseline_accuracy=round(baseline.held_out.accuracy, 4) if baseline else None,
            timings=json.dumps(report.timings),
        )
        return report
