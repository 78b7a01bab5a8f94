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


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("rewardops-store"),
    show_default=True,
    help="Directory that stands in for object storage: s3://bucket/key is read and written "
    "as STORE/bucket/key. Ignored with --s3-endpoint.",
)
@click.option(
    "--s3-endpoint",
    help="Use this real S3 endpoint (host:port) instead of --store; credentials from "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
)
@click.option("--s3-secure/--s3-insecure", default=True, show_default=True, help="TLS to S3.")
@click.option(
    "--serve-port",
    type=click.IntRange(1, 65535),
    default=8780,
    show_default=True,
    help="Local port of the serving 'Deployment' (the next ports for further Deployments).",
)
@click.option(
    "--served-model",
    help="The model in production when the run starts (URI); the baseline the candidate "
    "must beat and, without training.baseModelUri, the model to fine-tune.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("rewardops-run"),
    show_default=True,
    help="Where logs and the final statuses (status/NAME.yaml) are written.",
)
@click.option("--approve", is_flag=True, help="Approve promotion of updates in Manual mode.")
def run(
    *,
    file: Path,
    store: Path,
    s3_endpoint: str | None,
    s3_secure: bool,
    serve_port: int,
    served_model: str | None,
    work_dir: Path,
    approve: bool,
) -> None:
    """Run the RewardModelUpdates in FILE to the end on this machine, with no cluster.

    The same reconcile core as the operator drives each update: the training Job is a local
    `rewardops-trainer train` process, the serving Deployment a local reference scorer on
    --serve-port that a rollout switches to the new model only once it is ready. Progress,
    the gate table and the final status (saved as YAML under --work-dir) are printed.

    Exit codes: 0 promoted (Succeeded); 10 Rejected by the gates; 11 RolledBack; 12 Failed;
    13 waiting for approval (Manual mode without --approve); 1 invalid input; 130 interrupted
    (the trainer is stopped and the served model left as it was).
    """
    from rewardops_operator.local.console import status_yaml
    from rewardops_operator.local.runner import (
        EXIT_INTERRUPTED,
        RunOptions,
        exit_code,
        load_updates,
        run_updates,
    )

    updates = load_updates(file)
    options = RunOptions(
        store=store,
        work_dir=work_dir,
        serve_port=serve_port,
        served_model=served_model,
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
        approve=approve,
    )
    try:
        items = run_updates(updates, options)
    except KeyboardInterrupt:
        click.echo("interrupted: trainer stopped, served model unchanged", err=True)
        sys.exit(EXIT_INTERRUPTED)
    for item in items:
        click.echo(f"--- {item.name}\n{status_yaml(item.status)}", nl=False)
    sys.exit(exit_code(items))


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("rewardops-demo"),
    show_default=True,
    help="Where the demo writes everything (made afresh on each run).",
)
@click.option(
    "--quick", is_flag=True, help="A tiny random model and less data: seconds, not minutes."
)
@click.option("--serve-port", type=click.IntRange(1, 65535), default=8790, show_default=True)
def demo(directory: Path, quick: bool, serve_port: int) -> None:
    """Play three updates end to end on this machine, with nothing prepared.

    Seeds synthetic telemetry (with PII, malformed lines and events without consent), a golden
    set and the bundled MiniLM reward model, then runs: one update that improves on the
    served model and is promoted; one trained on poisoned feedback that the gates reject; one
    whose artifact is damaged before promotion, so the rollout stalls and is rolled back. Ends
    with a summary and leaves every file for inspection under --dir.
    """
    from rewardops_operator.local.demo import run_demo

    items = run_demo(directory, quick=quick, serve_port=serve_port)
    expected = ["Succeeded", "Rejected", "RolledBack"]
    if [str(item.status.phase) for item in items] != expected:
        click.echo("the demo did not end as designed; see the statuses above", err=True)
        sys.exit(1)


# --- operator (issue 5) ------------------------------------------------------------------------


@main.command("operator")
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Serve RewardModelUpdates in this namespace (repeatable).",
)
@click.option("-A", "--all-namespaces", "clusterwide", is_flag=True, help="Serve every namespace.")
@click.option(
    "--peering",
    metavar="NAME",
    help="Run as one of several replicas: kopf peering object NAME picks the active one. "
    "Default: standalone (one replica).",
)
@click.option("--priority", type=int, default=0, show_default=True, help="Peering priority.")
@click.option(
    "--liveness",
    default="http://0.0.0.0:8080/healthz",
    show_default=True,
    help="Liveness endpoint URL; empty to disable.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9090,
    show_default=True,
    help="Prometheus metrics port; 0 to disable.",
)
@click.option("--log-format", type=click.Choice(["full", "json"]), default="full")
@click.option("-v", "--verbose", is_flag=True, help="Log each API call and handler.")
def run_operator(
    *,
    namespaces: tuple[str, ...],
    clusterwide: bool,
    peering: str | None,
    priority: int,
    liveness: str,
    metrics_port: int,
    log_format: str,
    verbose: bool,
) -> None:
    """Run the operator: reconcile RewardModelUpdates until stopped (SIGTERM).

    Settings come from REWARDOPS_* environment variables (see docs/operator.md); credentials
    from the pod's service account, or $KUBECONFIG outside a cluster.
    """
    if bool(namespaces) == clusterwide:
        raise click.UsageError("pass --namespace (one or more) or --all-namespaces")
    import asyncio

    import kopf
    import prometheus_client

    # Importing the module registers its handlers with kopf.
    import rewardops_operator.handlers  # noqa: F401

    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
    )
    if metrics_port:
        prometheus_client.start_http_server(metrics_port)
    asyncio.run(
        kopf.operator(
            standalone=peering is None,
            peering_name=peering,
            priority=priority,
            namespaces=namespaces,
            clusterwide=clusterwide,
            liveness_endpoint=liveness or None,
        )
    )


if __name__ == "__main__":
    main()
