"""`rewardops`: validate RewardModelUpdates, print the CRD, run updates locally, run the operator."""

from __future__ import annotations

import click

from rewardops_operator import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rewardops")
def main() -> None:
    """rewardops keeps a production reward model in step with fresh telemetry.

    A RewardModelUpdate asks for a new reward model: the operator trains a candidate from
    recent telemetry, checks it against the model in production, rolls it into the serving
    Deployment and rolls back on regression.
    """
