"""`rewardops`: validate updates, print the CRD, run updates locally, run the operator."""

from __future__ import annotations

import sys
from pathlib import Path

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


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Print problems only, no summary line.")
def validate(files: tuple[Path, ...], quiet: bool) -> None:
    """Check RewardModelUpdate YAML files before they reach a cluster.

    Each file may hold several documents; documents of other kinds are skipped, so a whole
    GitOps folder can be passed. Each update is checked against the CRD schema (what the API
    server would refuse) and the semantic rules (what the operator would refuse). Every problem
    is printed as FILE: document N (NAME): FIELD: MESSAGE. Exit code 1 on any problem, which
    makes this command fit a pre-merge CI job.
    """
    from rewardops_operator.api.validation import check_file

    total_updates = 0
    total_problems = 0
    for path in files:
        updates, problems = check_file(path)
        total_updates += updates
        total_problems += len(problems)
        for problem in problems:
            click.echo(str(problem), err=True)
    if not quiet:
        verdict = "ok" if total_problems == 0 else f"{total_problems} problem(s)"
        click.echo(f"{total_updates} RewardModelUpdate(s) in {len(files)} file(s): {verdict}")
    if total_problems:
        sys.exit(1)


@main.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
def crd(output: Path | None) -> None:
    """Print the RewardModelUpdate CustomResourceDefinition, generated from the API models.

    crds/ in the repository holds this output; `kubectl apply -f` it or let Helm install it.
    """
    from rewardops_operator.api.crd import crd_yaml

    text = crd_yaml()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
