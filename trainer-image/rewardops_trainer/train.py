"""Bradley-Terry fine-tuning of a reward model on preference pairs.

Loss per pair: ``-logsigmoid(r_chosen - r_rejected - margin) * weight``, averaged by weight over
an optimizer step, plus an optional reward-centering term ``coef * mean((r_c + r_r)^2)``.

The loop: chosen and rejected texts of a micro-batch go through one forward pass; batches are
grouped by length; BERT-style encoders run without padding (``model.padding_free_rewards``),
other models padded only to the batch's longest row; gradient accumulation splits an optimizer
step (``batchSize`` pairs) into micro-batches; linear warmup then linear decay; gradient
clipping. Every step reseeds torch from (seed, step) and the batch order depends only on
(seed, epoch), so a resumed run takes exactly the path of an uninterrupted one. CUDA runs under
bf16 autocast; CPU stays fp32 (bf16 autocast was about 20x slower on AVX2-only CPUs). With
WORLD_SIZE > 1 (``rewardops-trainer launch``) each rank takes its share of every step and DDP
averages gradients, through the padded forward.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F

from rewardops_trainer.contract import Hyperparameters
from rewardops_trainer.errors import DataError
from rewardops_trainer.model import (
    collate,
    encode,
    padding_free_model,
    padding_free_rewards,
    rewards,
)
from rewardops_trainer.progress import Progress

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rewardops_trainer.checkpoint import Checkpointer

#: How many optimizer steps' worth of pairs are sorted by length together before batching.
LENGTH_GROUP_STEPS = 50


@dataclass(frozen=True)
class PairSet:
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    weights: list[float]
    margins: list[float]
    rules: list[str]

    def __len__(self) -> int:
        return len(self.prompts)


def read_pairs(path: Path) -> PairSet:
    """Pairs from a JSONL file of ``{"prompt","chosen","rejected","weight","margin","rule"}``."""
    columns: dict[str, list[Any]] = {k: [] for k in ("prompt", "chosen", "rejected")}
    weights: list[float] = []
    margins: list[float] = []
    rules: list[str] = []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                for key, values in columns.items():
                    if not isinstance(row[key], str):
                        raise TypeError(f"{key} must be a string")
                    values.append(row[key])
                weight = float(row.get("weight", 1.0))
                if not weight >= 0.0:
                    raise ValueError("weight must be >= 0")
                weights.append(weight)
                margins.append(float(row.get("margin", 0.0)))
                rules.append(str(row.get("rule", "unknown")))
            except (ValueError, TypeError, KeyError) as error:
                raise DataError(f"{path}:{number}: bad pair: {error}") from None
    return PairSet(
        columns["prompt"], columns["chosen"], columns["rejected"], weights, margins, rules
    )


def pairwise_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor,
    weight: torch.Tensor,
    *,
    centering: float | None = None,
    total_weight: float | None = None,
    total_pairs: int | None = None,
) -> torch.Tensor:
    """Weighted Bradley-Terry loss with optional reward centering.

    ``total_weight`` / ``total_pairs`` are the denominators of the whole optimizer step when
    this is one micro-batch of it (so accumulated micro-batches sum to the step's mean).
    """
    per_pair = -F.logsigmoid(chosen - rejected - margin)
    denominator = weight.sum() if total_weight is None else total_weight
    loss = (per_pair * weight).sum() / denominator
    if centering:
        pairs = chosen.numel() if total_pairs is None else total_pairs
        loss = loss + centering * ((chosen + rejected) ** 2).sum() / pairs
    return loss


def plan_epoch(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Pair indices of each optimizer step of one epoch: shuffled, then grouped by length.

    Within windows of ``LENGTH_GROUP_STEPS`` steps pairs are sorted by length, so a batch holds
    similar lengths; the batches are shuffled again so training does not see lengths in order.
    The last, partial batch is kept.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * LENGTH_GROUP_STEPS
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then linear decay to zero at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainOptions:
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    checkpointer: Checkpointer | None = None
    checkpoint_interval_s: float = 600.0
    #: Also checkpoint every this many steps (tests, short runs); None: by time only.
    checkpoint_every_steps: int | None = None
    progress: Progress = field(default_factory=lambda: Progress(enabled=False))
    #: Polled after every optimizer step; True saves a checkpoint and raises TrainingStopped.
    should_stop: Callable[[], bool] = lambda: False
    distributed: Distributed = field(default_factory=Distributed)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    epochs: float
    final_loss: float
    pairs_per_second: float
    device: str
    resumed_from_step: int | None
    seconds: float


class TrainingStopped(KeyboardInterrupt):
    """A stop was requested; a checkpoint of ``step`` was saved first."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped after step {step}; checkpoint saved")
        self.step = step


def prepare_model(model: PreTrainedModel, hp: Hyperparameters) -> torch.nn.Module:
    """Apply the memory options: LoRA adapters (peft) and gradient checkpointing."""
    prepared: torch.nn.Module = model
    if hp.gradient_checkpointing:
        # transformers 5 renamed gradient to activation checkpointing; 4.x has the old name only.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(  # type: ignore[no-untyped-call]
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model.config.use_cache = False
    if hp.lora is not None:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=hp.lora.rank,
            lora_alpha=hp.lora.alpha,
            lora_dropout=hp.lora.dropout,
        )
        with warnings.catch_warnings():
            # peft 0.21 reads a property that transformers 5 deprecated; nothing to act on here.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            prepared = get_peft_model(model, lora)
    return prepared


def finish_model(prepared: torch.nn.Module, hp: Hyperparameters) -> PreTrainedModel:
    """The plain transformers model to publish: LoRA adapters merged into the weights."""
    merge = getattr(prepared, "merge_and_unload", None)
    result = cast("PreTrainedModel", merge() if merge is not None else prepared)
    if hp.gradient_checkpointing:
        if hasattr(result, "activation_checkpointing_disable"):
            result.activation_checkpointing_disable()  # type: ignore[no-untyped-call]
        else:
            result.gradient_checkpointing_disable()  # type: ignore[no-untyped-call]
    return result


def _optimizer(model: torch.nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # Biases and norm weights (1-d) take no weight decay, as usual for transformers.
    decay = [p for _, p in trainable if p.ndim >= 2]
    no_decay = [p for _, p in trainable if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": hp.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel updates all parameters in one pass (CPU and CUDA alike).
    return torch.optim.AdamW(groups, lr=hp.learning_rate, fused=True)


def _micro_batches(
    indices: list[int], accumulation: int, rank: int, world: int
) -> Iterator[list[int]]:
    mine = sorted(indices)[rank::world]
    size = math.ceil(len(mine) / accumulation) if mine else 0
    for start in range(0, len(mine), max(1, size)):
        yield mine[start : start + size]


def train_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: PairSet,
    hp: Hyperparameters,
    options: TrainOptions | None = None,
) -> tuple[PreTrainedModel, TrainResult]:
    """Fine-tune ``model`` on ``pairs``; returns the trained (LoRA-merged) model and a summary."""
    options = options or TrainOptions()
    if len(pairs) == 0:
        raise DataError("no training pairs")
    device = options.device
    dist = options.distributed
    n = len(pairs)
    # Rows [0, n) are the chosen texts, rows [n, 2n) the rejected ones.
    both = encode(
        tokenizer, pairs.prompts * 2, pairs.chosen + pairs.rejected, max_length=hp.max_length
    )
    lengths = [max(len(both.input_ids[i]), len(both.input_ids[i + n])) for i in range(n)]
    weights = torch.tensor(pairs.weights, dtype=torch.float32)
    margins = torch.tensor(pairs.margins, dtype=torch.float32)
    steps_per_epoch = math.ceil(n / hp.batch_size)
    total = hp.max_steps or steps_per_epoch * hp.epochs
    warmup = round(hp.warmup_ratio * total)

    torch.manual_seed(hp.seed)
    prepared = prepare_model(model, hp).to(device)
    prepared.train()
    optimizer = _optimizer(prepared, hp)
    resumed = options.checkpointer.load(prepared, optimizer) if options.checkpointer else None
    start = resumed.step if resumed else 0
    # The last step's loss stays on the device until something reads it (see Progress.step).
    last_loss: torch.Tensor | float = float("nan")
    if resumed:
        last_loss = float(resumed.extra.get("loss", last_loss))
        options.progress.log("resumed", step=start)

    trainer: torch.nn.Module = prepared
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        trainer = DistributedDataParallel(prepared, device_ids=ids)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )
    pad = int(tokenizer.pad_token_id)
    # DDP must see its own forward, and checkpointing lives in the transformers layers: both
    # keep the padded forward.
    unpadded = (
        padding_free_model(prepared) if dist.world == 1 and not hp.gradient_checkpointing else None
    )
    params = [p for p in prepared.parameters() if p.requires_grad]
    plans: dict[int, list[list[int]]] = {}
    processed = 0
    began = time.perf_counter()
    last_checkpoint = time.monotonic()
    options.progress.start(total, initial=start)
    try:
        for step in range(start, total):
            epoch, position = divmod(step, steps_per_epoch)
            if epoch not in plans:
                plans = {epoch: plan_epoch(lengths, hp.batch_size, hp.seed, epoch)}
            indices = plans[epoch][position]
            if len(indices) < dist.world:
                continue  # a rank without pairs would leave DDP's all-reduce waiting forever
            factor = lr_factor(step, total, warmup)
            for group in optimizer.param_groups:
                group["lr"] = hp.learning_rate * factor
            torch.manual_seed(hp.seed * 1_000_003 + step)
            step_weight = float(weights[indices].sum()) or 1.0
            micro = list(
                _micro_batches(indices, hp.gradient_accumulation_steps, dist.rank, dist.world)
            )
            step_loss = torch.zeros((), device=device)
            for k, chunk in enumerate(micro):
                sync = k == len(micro) - 1 or dist.world == 1
                context = nullcontext() if sync else trainer.no_sync()  # type: ignore[operator]
                with context, autocast:
                    rows = chunk + [i + n for i in chunk]
                    if unpadded is not None:
                        values = padding_free_rewards(unpadded, both, rows, device).float()
                    else:
                        values = rewards(trainer, collate(both, rows, pad, device)).float()
                    index = torch.tensor(chunk)
                    loss = pairwise_loss(
                        values[: len(chunk)],
                        values[len(chunk) :],
                        margins[index].to(device, non_blocking=True),
                        weights[index].to(device, non_blocking=True),
                        centering=hp.reward_centering,
                        total_weight=step_weight,
                        total_pairs=len(indices),
                    )
                    # DDP averages gradients over ranks; each rank's loss is its share of a sum.
                    (loss * dist.world).backward()  # type: ignore[no-untyped-call]
                step_loss += loss.detach()
            torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            last_loss = step_loss
            processed += len(indices)
            elapsed = time.perf_counter() - began
            done = step + 1
            options.progress.step(
                done,
                loss=partial(float, step_loss),
                pairs_per_s=processed / elapsed if elapsed else 0.0,
                lr=hp.learning_rate * factor,
            )
            stop = options.should_stop()
            due = time.monotonic() - last_checkpoint >= options.checkpoint_interval_s or (
                options.checkpoint_every_steps is not None
                and done % options.checkpoint_every_steps == 0
            )
            # The last step is saved too: a pod that dies while evaluating resumes past training.
            if options.checkpointer and dist.is_main and (stop or due or done == total):
                options.checkpointer.save(prepared, optimizer, done, {"loss": float(step_loss)})
                last_checkpoint = time.monotonic()
                options.progress.log("checkpoint", step=done)
            if stop:
                raise TrainingStopped(done)
    finally:
        options.progress.close()
    final_loss = float(last_loss)  # on a GPU, waits for the last step: the time includes it
    seconds = time.perf_counter() - began
    result = TrainResult(
        steps=total,
        epochs=total / steps_per_epoch,
        final_loss=0.0 if math.isnan(final_loss) else final_loss,
        pairs_per_second=processed / seconds if seconds > 0 else 0.0,
        device=str(device),
        resumed_from_step=start if resumed else None,
        seconds=seconds,
    )
    return finish_model(prepared, hp), result
