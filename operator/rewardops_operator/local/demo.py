"""`rewardops demo`: three updates, three outcomes, on this machine with nothing prepared.

1. improve  - trained on honest feedback: beats the served model and is promoted.
2. poisoned - trained on feedback with flipped labels: it agrees with its own (poisoned)
              held-out pairs but loses on the curated golden set, so the gates reject it and
              production is never touched.
3. broken   - passes its gates in Manual mode, then its model file is damaged in storage
              before approval (as bit rot or a bad copy would); the new scorer never becomes
              ready, the rollout stalls and the previous model is restored.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import yaml

from rewardops_operator.api.models import Phase, RewardModelUpdate
from rewardops_operator.local.driver import LocalUpdate
from rewardops_operator.local.runner import (
    LocalEnvironment,
    RunOptions,
    prepare,
    save_status,
    stop_here,
)
from rewardops_trainer.storage import open_store

MARKER = ".rewardops-demo"
WINDOW_END = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DemoSize:
    """How much data and training each update gets; sized for a 2-core machine."""

    events: int
    golden_pairs: int
    max_steps: int
    batch_size: int
    max_length: int
    tiny: bool
    learning_rate: str


FULL = DemoSize(
    events=2400,
    golden_pairs=150,
    max_steps=40,
    batch_size=16,
    max_length=96,
    tiny=False,
    learning_rate="5e-5",
)
QUICK = DemoSize(
    events=1200,
    golden_pairs=120,
    max_steps=40,
    batch_size=16,
    max_length=64,
    tiny=True,
    learning_rate="1e-3",
)


def _prepare_directory(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()) and not (directory / MARKER).exists():
        raise click.ClickException(
            f"{directory} is not empty and was not made by `rewardops demo`; pick another --dir"
        )
    if (directory / MARKER).exists():
        import shutil

        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by rewardops demo; safe to delete\n")


def _seed_store(store: Path, size: DemoSize) -> dict[str, Any]:
    from rewardops_trainer.synthetic import generate_golden, generate_telemetry

    start = WINDOW_END - timedelta(days=7)
    honest = generate_telemetry(
        open_store((store / "telemetry" / "assistant").as_uri()),
        events=size.events,
        seed=1,
        start=start,
        end=WINDOW_END,
    )
    poisoned = generate_telemetry(
        open_store((store / "telemetry" / "poisoned").as_uri()),
        events=size.events,
        seed=2,
        start=start,
        end=WINDOW_END,
        flip_fraction=1.0,
    )
    golden = generate_golden(
        open_store((store / "golden").as_uri()), "assistant.jsonl", pairs=size.golden_pairs, seed=3
    )
    return {"honest": honest, "poisoned": poisoned, "golden": golden}


def _base_model(store: Path, size: DemoSize) -> str:
    target = store / "models" / "base-v0"
    command = [sys.executable, "-m", "rewardops_trainer", "init-model", "--out", str(target)]
    if size.tiny:
        command.append("--tiny")
    subprocess.run(command, check=True)
    return "s3://models/base-v0"


def _update(
    name: str, telemetry: str, size: DemoSize, *, steps: int, **spec: Any
) -> dict[str, Any]:
    since = (WINDOW_END - timedelta(days=7)).isoformat().replace("+00:00", "Z")
    until = WINDOW_END.isoformat().replace("+00:00", "Z")
    body: dict[str, Any] = {
        "serving": {"deployment": "reward-scorer"},
        "telemetry": {"uri": f"s3://telemetry/{telemetry}/", "since": since, "until": until},
        "goldenSet": {"uri": "s3://golden/assistant.jsonl"},
        "output": {"uri": "s3://models/runs/"},
        "training": {
            "gpus": 0,
            "hyperparameters": {
                "maxSteps": steps,
                "batchSize": size.batch_size,
                "maxLength": size.max_length,
                "learningRate": size.learning_rate,
            },
            "pairs": {"minPairs": 50},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "rewardops.dev/v1alpha1",
        "kind": "RewardModelUpdate",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": body,
    }


def _write_updates(directory: Path, size: DemoSize) -> list[RewardModelUpdate]:
    documents = [
        _update("improve", "assistant", size, steps=size.max_steps),
        _update("poisoned", "poisoned", size, steps=size.max_steps),
        # Only its rollout matters, so it trains for half as long.
        _update(
            "broken-artifact",
            "assistant",
            size,
            steps=size.max_steps // 2,
            gates={"maxHeldOutRegression": "0.2", "maxGoldenRegression": "0.2"},
            promotion={"mode": "Manual", "rolloutDeadlineSeconds": 60},
        ),
    ]
    folder = directory / "updates"
    folder.mkdir(parents=True, exist_ok=True)
    for number, document in enumerate(documents, start=1):
        text = yaml.safe_dump(document, sort_keys=False)
        (folder / f"{number}-{document['metadata']['name']}.yaml").write_text(text)
    return [RewardModelUpdate.model_validate(document) for document in documents]


def _damage_candidate(item: LocalUpdate) -> Path:
    """Overwrite the candidate's weights with garbage, as a bad copy in storage would."""
    candidate = item.status.candidate
    if candidate is None:
        raise click.ClickException(f"{item.name}: no candidate to damage")
    weights = Path(candidate.model_uri.removeprefix("file://")) / "model.safetensors"
    weights.write_bytes(b"\x00not a safetensors file")
    return weights


def _approve(item: LocalUpdate) -> None:
    spec = item.update.spec
    promotion = spec.promotion.model_copy(update={"approved": True})
    item.update = item.update.model_copy(
        update={"spec": spec.model_copy(update={"promotion": promotion})}
    )


def _reason(item: LocalUpdate) -> str:
    ready = next((c for c in item.status.conditions if c.type == "Ready"), None)
    return ready.message if ready else ""


def _summary(items: list[LocalUpdate], directory: Path, seconds: float) -> str:
    lines = ["", click.style("rewardops demo: summary", bold=True)]
    for item in items:
        status = item.status
        candidate = status.candidate.held_out_accuracy if status.candidate else "-"
        golden = (status.candidate.golden_accuracy or "-") if status.candidate else "-"
        served_golden = (status.baseline.golden_accuracy or "-") if status.baseline else "-"
        lines.append(
            f"  {item.name:<16} {status.phase!s:<11} held-out {candidate}, golden {golden} "
            f"vs served {served_golden}"
        )
        lines.append(f"  {'':<16} {_reason(item)}")
    lines += [
        f"  finished in {seconds:.0f}s; everything is under {directory}:",
        f"    {directory / 'store' / 'telemetry'}   synthetic telemetry (with PII, bad lines)",
        f"    {directory / 'store' / 'models' / 'runs'}   per run: pairs/, rejected.jsonl,"
        " manifest.json, model/, report.json",
        f"    {directory / 'updates'}   the three RewardModelUpdates",
        f"    {directory / 'run' / 'status'}   their final statuses; logs in run/logs",
    ]
    return "\n".join(lines)


def run_demo(directory: Path, *, quick: bool, serve_port: int) -> list[LocalUpdate]:
    started = time.monotonic()
    size = QUICK if quick else FULL
    _prepare_directory(directory)
    store = directory / "store"
    click.echo(f"seeding {store} with synthetic telemetry, a golden set and a base model")
    seeded = _seed_store(store, size)
    click.echo(
        f"  telemetry: {seeded['honest'].lines} honest and {seeded['poisoned'].lines} poisoned "
        f"lines; golden set: {seeded['golden']} pairs"
    )
    options = RunOptions(
        store=store,
        work_dir=directory / "run",
        serve_port=serve_port,
        served_model=_base_model(store, size),
        echo_trainer=sys.stderr.isatty(),
    )
    updates = _write_updates(directory, size)
    items = [LocalUpdate(prepare(update, options)) for update in updates]
    environment = LocalEnvironment([item.update for item in items], options)
    try:
        environment.start()
        driver = environment.driver()
        improve, poisoned, broken = items
        driver.run(improve)
        driver.run(poisoned)
        driver.run(broken, until=stop_here)
        if broken.status.phase == Phase.AWAITING_APPROVAL:
            damaged = _damage_candidate(broken)
            click.echo(f"[{broken.name}] damaged {damaged} in storage, then approved promotion")
            _approve(broken)
            driver.run(broken)
        for item in items:
            save_status(item, options.work_dir)
    finally:
        environment.stop()
    click.echo(_summary(items, directory, time.monotonic() - started))
    return items
