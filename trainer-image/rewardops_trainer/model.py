"""Reward models: locate, load, encode, score and save.

A reward model is ``AutoModelForSequenceClassification`` with one output, loaded from a local
directory (an ``s3://`` URI is first copied into a cache) and never from a hub. Weights are
safetensors only: a directory holding only pickled ``.bin`` weights is refused.

How a (prompt, response) pair becomes tokens, the same for training, evaluation and serving:

- encoders (a tokenizer with a separator token: BERT, MiniLM) get the text pair
  ``[CLS] prompt [SEP] response [SEP]``; when too long, the longer side is cut first;
- decoders (GPT-2, Llama-style: no separator token) get ``prompt + "\\n\\n" + response`` cut
  from the left, because their head reads the last non-pad token, so the response's end must
  survive truncation. A missing pad token reuses EOS, and padding goes on the right.

Special-token strings inside user text (``[SEP]``, ``<|endoftext|>``) are split as plain text,
so telemetry cannot forge the structure above.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from rewardops_trainer.contract import StorageSettings
from rewardops_trainer.errors import ConfigError
from rewardops_trainer.storage import ObjectNotFound, get_dir, local_path, open_store

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DECODER_TEMPLATE_SEPARATOR = "\n\n"
SCORE_BATCH_SIZE = 32
#: The padding-free forward pads attention's rows to a multiple of this. GPU attention kernels
#: (cuDNN's) build a plan per shape: on an H200 a call cost 2-3.5 ms of CPU time on a new
#: shape and 0.12-0.15 ms on a known one, so few distinct widths matter more than a few
#: masked columns. With length-grouped batches it leaves 4 shapes where exact widths gave 36
#: in 300 steps.
ATTENTION_WIDTH_MULTIPLE = 16


def resolve_model(uri: str, settings: StorageSettings | None, cache_dir: Path) -> Path:
    """The local directory of the model at ``uri``; ``s3://`` models are copied to ``cache_dir``."""
    if urlparse(uri).scheme == "s3":
        target = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
        if target.is_dir():
            return target
        # Download beside the target and rename, so an interrupted copy is never taken as whole.
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache_dir))
        try:
            try:
                count = get_dir(open_store(uri, settings), "", partial)
            except ObjectNotFound:
                count = 0
            if count == 0:
                raise ConfigError(f"model {uri}: no objects there")
            os.replace(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target
    try:
        path = local_path(uri)
    except ValueError as error:
        raise ConfigError(f"model {uri}: {error}") from None
    if not path.is_dir():
        raise ConfigError(f"model {uri}: no such directory")
    return path


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    # The load report and progress bars would drown the Job's JSON log lines.
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def is_decoder(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether pairs use the decoder template (no separator token to build a text pair)."""
    return tokenizer.sep_token is None


def load_reward_model(
    path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The reward model and tokenizer in ``path``; a :class:`ConfigError` says what is wrong."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    if not (path / "config.json").is_file():
        raise ConfigError(f"model {path}: config.json is missing")
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.glob("*.bin"))
        if pickled:
            raise ConfigError(
                f"model {path}: only pickled weights ({', '.join(pickled)}); "
                "convert them to safetensors, pickle is never loaded"
            )
        raise ConfigError(f"model {path}: no model.safetensors")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as error:  # transformers raises many kinds for a bad tokenizer
        raise ConfigError(f"model {path}: cannot load the tokenizer: {error}") from error
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=1,
            local_files_only=True,
            use_safetensors=True,
            dtype=dtype or torch.float32,
        )
    except Exception as error:
        raise ConfigError(f"model {path}: cannot load the weights: {error}") from error
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"model {path}: the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if is_decoder(tokenizer):
        tokenizer.truncation_side = "left"
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


@dataclass(frozen=True)
class Encoded:
    """Token ids of (prompt, response) texts, unpadded; ``token_type_ids`` only for encoders."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None


def encode(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    max_length: int,
) -> Encoded:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    common: dict[str, Any] = {
        "truncation": True,
        "max_length": max_length,
        "split_special_tokens": True,
        "return_attention_mask": False,
    }
    if is_decoder(tokenizer):
        texts = [
            p + DECODER_TEMPLATE_SEPARATOR + r for p, r in zip(prompts, responses, strict=True)
        ]
        out = tokenizer(texts, return_token_type_ids=False, **common)
        return Encoded(out["input_ids"], None)
    out = tokenizer(list(prompts), list(responses), return_token_type_ids=True, **common)
    return Encoded(out["input_ids"], out["token_type_ids"])


def collate(
    encoded: Encoded, indices: Sequence[int], pad_token_id: int, device: str | torch.device
) -> dict[str, torch.Tensor]:
    """A right-padded batch of the rows ``indices``, as short as its longest row."""
    width = max(len(encoded.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    types = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        length = len(encoded.input_ids[i])
        ids[row, :length] = torch.tensor(encoded.input_ids[i])
        mask[row, :length] = 1
        if encoded.token_type_ids is not None:
            types[row, :length] = torch.tensor(encoded.token_type_ids[i])
    batch = {"input_ids": ids, "attention_mask": mask}
    if encoded.token_type_ids is not None:
        batch["token_type_ids"] = types
    return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def rewards(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One reward per row of ``batch``."""
    logits: torch.Tensor = model(**batch).logits
    return logits.squeeze(-1)


def padding_free_model(model: torch.nn.Module) -> Any | None:
    """The BERT reward model inside ``model`` (peft adapters allowed) that
    :func:`padding_free_rewards` can run, or None: other architectures take the padded forward.
    """
    from transformers import BertForSequenceClassification

    get_base = getattr(model, "get_base_model", None)  # a peft wrapper; its layers hold LoRA
    base = get_base() if get_base is not None else model
    # Exactly this class: a subclass may change the forward this function reproduces.
    if type(base) is not BertForSequenceClassification:
        return None
    config = base.config
    plain = (
        not config.is_decoder
        and not getattr(config, "add_cross_attention", False)
        and getattr(config, "position_embedding_type", None) in (None, "absolute")
        and base.bert.pooler is not None
    )
    return base if plain else None


def _heads(
    tokens: torch.Tensor, grid: torch.Tensor, rows: int, width: int, heads: int
) -> torch.Tensor:
    """``[tokens, hidden]`` -> ``[rows, heads, width, head size]``: scattered to their ``grid``
    places among zeros, or just reshaped when there is one token per row (``width`` 1)."""
    if width > 1:
        tokens = tokens.new_zeros(rows * width, tokens.shape[-1]).index_copy_(0, grid, tokens)
    return tokens.view(rows, width, heads, -1).transpose(1, 2)


def _attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    padding: torch.Tensor,
    dropout: float,
) -> torch.Tensor:
    """Scaled dot-product attention that ignores the keys where ``padding`` is True, with
    dropout on the attention weights."""
    scale = query.shape[-1] ** -0.5
    if query.is_cuda:  # fused kernels; not exercised by the CPU-only tests
        return F.scaled_dot_product_attention(
            query, key, value, attn_mask=~padding, dropout_p=dropout, scale=scale
        )
    # On CPU, torch's fused function takes a slower generic path when dropout is on (about
    # 20% slower than these plain operations, measured on MiniLM shapes).
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    weights = torch.softmax(scores.masked_fill(padding, torch.finfo(scores.dtype).min), dim=-1)
    return torch.matmul(F.dropout(weights, dropout, training=dropout > 0), value)


def padding_free_rewards(
    model: Any, encoded: Encoded, indices: Sequence[int], device: str | torch.device
) -> torch.Tensor:
    """The same rewards as :func:`rewards` of :func:`collate` for a :func:`padding_free_model`,
    with less compute: every per-token layer (projections, feed-forward, norms, dropout) runs
    on the real tokens only, laid end to end, and only attention sees rows padded (to the
    longest, rounded up to ``ATTENTION_WIDTH_MULTIPLE``); the reward reads [CLS] alone, so
    the last layer's queries and feed-forward run for [CLS] only (its keys and values still
    cover every token).
    """
    bert = model.bert
    ids = [encoded.input_ids[i] for i in indices]
    lengths = torch.tensor([len(row) for row in ids])
    rows = len(ids)
    width = -(-int(lengths.max()) // ATTENTION_WIDTH_MULTIPLE) * ATTENTION_WIDTH_MULTIPLE
    flat = torch.tensor([token for row in ids for token in row])
    if encoded.token_type_ids is None:
        types = torch.zeros_like(flat)
    else:
        types = torch.tensor([t for i in indices for t in encoded.token_type_ids[i]])
    starts = torch.cumsum(lengths, 0) - lengths
    positions = torch.arange(len(flat)) - starts.repeat_interleave(lengths)
    # Where each real token sits in a [rows * width] grid of right-padded rows.
    grid = torch.arange(rows).repeat_interleave(lengths) * width + positions
    padding = (torch.arange(width) >= lengths[:, None])[:, None, None, :]
    flat, types, positions, grid, padding, starts = (
        # A blocking copy would wait for all the work queued on a GPU, each time.
        tensor.to(device, non_blocking=True)
        for tensor in (flat, types, positions, grid, padding, starts)
    )

    hidden = bert.embeddings(
        input_ids=flat[None], token_type_ids=types[None], position_ids=positions[None]
    )[0]
    layers = bert.encoder.layer
    for number, layer in enumerate(layers):
        attention = layer.attention.self
        heads, size = attention.num_attention_heads, attention.attention_head_size
        last = number == len(layers) - 1
        residual = hidden[starts] if last else hidden
        query = attention.query(residual)
        query = _heads(query, grid, rows, 1 if last else width, heads)
        key = _heads(attention.key(hidden), grid, rows, width, heads)
        value = _heads(attention.value(hidden), grid, rows, width, heads)
        dropout = attention.dropout.p if attention.training else 0.0
        context = _attend(query, key, value, padding, dropout)
        context = context.transpose(1, 2).reshape(-1, heads * size)
        if not last:
            context = context[grid]
        hidden = layer.attention.output(context, residual)
        hidden = layer.output(layer.intermediate(hidden), hidden)
    pooled = bert.pooler.activation(bert.pooler.dense(hidden))
    logits: torch.Tensor = model.classifier(model.dropout(pooled))
    return logits.squeeze(-1)


def score(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    max_length: int,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Float32 rewards, shape ``[n]``, in input order (batches grouped by length for speed)."""
    encoded = encode(tokenizer, prompts, responses, max_length=max_length)
    order = sorted(range(len(encoded.input_ids)), key=lambda i: len(encoded.input_ids[i]))
    out = torch.empty(len(order), dtype=torch.float32)
    pad = int(tokenizer.pad_token_id)
    # A CPU is compute-bound here and the padding-free forward computes less (MiniLM: about
    # 1.2x fewer CPU seconds); on a GPU the padded forward is the one measured for serving.
    free = padding_free_model(model) if torch.device(device).type == "cpu" else None
    was_training = model.training
    model.eval()  # type: ignore[no-untyped-call]
    try:
        with torch.inference_mode():
            for start in range(0, len(order), SCORE_BATCH_SIZE):
                chunk = order[start : start + SCORE_BATCH_SIZE]
                if free is not None:
                    values = padding_free_rewards(free, encoded, chunk, device)
                else:
                    values = rewards(model, collate(encoded, chunk, pad, device))
                out[torch.tensor(chunk)] = values.float().cpu()
    finally:
        model.train(was_training)
    return out


def save_reward_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path
) -> None:
    """Weights (safetensors), config and tokenizer in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if any(out_dir.glob("*.bin")):
        raise ConfigError(f"{out_dir}: pickled weights were written; refusing to publish them")


def file_digests(directory: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``directory``."""
    return {
        path.relative_to(directory).as_posix(): file_sha256(path)
        for path in sorted(p for p in directory.rglob("*") if p.is_file())
    }


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def directory_digest(directory: Path) -> str:
    """One SHA-256 over a directory's file digests (the base model's lineage entry)."""
    lines = "".join(f"{name}\t{digest}\n" for name, digest in file_digests(directory).items())
    return hashlib.sha256(lines.encode()).hexdigest()
