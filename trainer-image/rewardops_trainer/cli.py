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
    model_uri: str,
    report_uri: str | None,
    expected_digest: str | None,
    host: str,
    port: int,
    device: str,
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
            **({"cache_dir": cache_dir} if cache_dir else {}),
        )
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
