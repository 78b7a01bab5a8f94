"""`rewardops-trainer`: build preference pairs, train and evaluate a reward model, serve it.

Each command keeps its heavy imports (torch, transformers) inside its body so that `--help`
stays fast and the pairs step runs without a GPU stack.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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
