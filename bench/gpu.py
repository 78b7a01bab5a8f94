"""One prepared check of the trainer and the scoring server on a CUDA GPU.

    python bench/gpu.py --minilm DIR [--quick]

Runs, each step in its own process with its own time limit, and prints as it goes:

1. the device (GPU name, memory, torch and transformers versions);
2. a complete `rewardops-trainer train` run on the GPU: synthetic telemetry with a planted
   preference -> pairs -> bf16 fine-tuning of MiniLM -> candidate and baseline evaluated on the
   same held-out and golden pairs -> report.json; prints what the report says (device,
   pairs/s, accuracies) and fails unless the candidate beats the untrained baseline;
3. bench/serve.py on the GPU: the batching server against one-request-one-forward, serving the
   model trained in step 2;
4. bench/train.py on the GPU: rewardops against TRL's RewardTrainer, both bf16 autocast, and
   rewardops with its padded forward, at batch 16 and 64 (skipped where TRL cannot be imported).

--minilm is a directory holding all-MiniLM-L6-v2 (`rewardops-trainer init-model` reads it;
nothing is downloaded). Ends with one line per step: ok, FAILED (exit code) or TIMED OUT.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 2, tzinfo=UTC)


def describe_device() -> None:
    import torch
    import transformers

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check is for a GPU machine")
    props = torch.cuda.get_device_properties(0)
    print(
        f"{props.name}: {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs; "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"transformers {transformers.__version__}, bf16 {torch.cuda.is_bf16_supported()}"
    )


def full_run(minilm: Path, work: Path, events: int, steps: int) -> None:
    """A whole training run through the CLI, as the training Job runs it."""
    from rewardops_trainer.contract import Hyperparameters, PairSettings, RunConfig
    from rewardops_trainer.contract.report import Report
    from rewardops_trainer.storage import open_store
    from rewardops_trainer.synthetic import generate_golden, generate_telemetry

    telemetry = open_store(f"file://{work}/telemetry")
    generate_telemetry(telemetry, events=events, seed=3, start=SINCE, end=UNTIL)
    generate_golden(open_store(f"file://{work}"), "golden.jsonl", pairs=300, seed=3)
    trainer = [sys.executable, "-m", "rewardops_trainer"]
    base = f"file://{work}/base"
    subprocess.run([*trainer, "init-model", "--from", str(minilm), "--out", base], check=True)
    config = RunConfig(
        run_id="gpu-check",
        telemetry_uri=f"file://{work}/telemetry",
        since=SINCE,
        until=UNTIL,
        golden_uri=f"file://{work}/golden.jsonl",
        output_uri=f"file://{work}/runs",
        base_model_uri=base,
        baseline_model_uri=base,
        hyperparameters=Hyperparameters(
            learning_rate=5e-5, batch_size=32, max_steps=steps, max_length=256
        ),
        pairs=PairSettings(validation_fraction=0.1),
    )
    (work / "config.json").write_text(config.to_json())
    began = time.perf_counter()
    subprocess.run([*trainer, "train", "--config", str(work / "config.json")], check=True)
    wall = time.perf_counter() - began
    report = Report.model_validate_json((work / "runs/gpu-check/report.json").read_text())
    candidate, baseline = report.candidate, report.baseline
    assert baseline is not None
    assert candidate.golden is not None
    assert baseline.golden is not None
    print(
        f"train command: {wall:.1f} s wall; {report.training.steps} steps on "
        f"{report.training.device} at {report.training.pairs_per_second:.1f} pairs/s; "
        f"{report.data.pairs_train} train pairs, {report.data.pairs_validation} held out"
    )
    print(
        f"held-out accuracy {candidate.held_out.accuracy:.4f} vs baseline "
        f"{baseline.held_out.accuracy:.4f}; golden {candidate.golden.accuracy:.4f} vs "
        f"{baseline.golden.accuracy:.4f}; scoring latency "
        f"{candidate.held_out.latency_ms_per_pair:.3f} ms/pair"
    )
    if candidate.held_out.accuracy <= baseline.held_out.accuracy:
        sys.exit("the candidate did not beat the untrained baseline")


def step(name: str, command: list[str], timeout: float) -> str:
    print(f"\n=== {name} ===", flush=True)
    began = time.perf_counter()
    try:
        done = subprocess.run(command, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        outcome = f"TIMED OUT after {timeout:.0f} s"
    else:
        outcome = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
    print(f"--- {name}: {outcome} in {time.perf_counter() - began:.0f} s", flush=True)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, required=True, help="all-MiniLM-L6-v2 directory")
    parser.add_argument("--quick", action="store_true", help="fewer steps and seconds")
    parser.add_argument("--part", choices=["device", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    steps = 60 if options.quick else 300
    if options.part == "device":
        describe_device()
        return
    if options.part == "run":
        full_run(options.minilm.resolve(), options.work, events=20_000, steps=steps)
        return

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.environ["HF_HUB_OFFLINE"] = "1"
    me = [sys.executable, __file__, "--minilm", str(options.minilm)]
    outcomes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="rewardops-gpu-") as scratch:
        work = Path(scratch)
        outcomes["device"] = step("device", [*me, "--part", "device"], 120)
        outcomes["train run"] = step("train run", [*me, "--part", "run", "--work", str(work)], 300)
        trained = work / "runs/gpu-check/model"
        model = trained if trained.is_dir() else options.minilm
        outcomes["bench/serve"] = step(
            "bench/serve",
            [
                sys.executable,
                str(HERE / "serve.py"),
                "--model",
                str(model),
                "--seconds",
                "3" if options.quick else "6",
            ],
            240,
        )
        # TRL is optional on a GPU machine: without it the trainer comparison is skipped.
        probe = [sys.executable, "-c", "import datasets, trl"]
        has_trl = subprocess.run(probe, capture_output=True, check=False).returncode == 0
        for batch in ("16", "64") if has_trl else ():
            outcomes[f"bench/train batch {batch}"] = step(
                f"bench/train batch {batch}",
                [
                    sys.executable,
                    str(HERE / "train.py"),
                    "--device",
                    "cuda",
                    "--padded",
                    "--rounds",
                    "1",
                    "--steps",
                    "40" if options.quick else "100",
                    "--batch",
                    batch,
                    "--events",
                    "8000",
                    "--model",
                    str(options.minilm),
                ],
                240,
            )
    print("\n=== summary ===")
    for name, outcome in outcomes.items():
        print(f"{name:<24}{outcome}")
    if not has_trl:
        print("bench/train skipped: trl or datasets cannot be imported")
    sys.exit(0 if all(o == "ok" for o in outcomes.values()) else 1)


if __name__ == "__main__":
    main()
