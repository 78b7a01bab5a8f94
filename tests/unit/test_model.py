"""Loading, encoding, scoring and saving reward models (tiny random models, no hub)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import rewardops_trainer.model as model_module
from rewardops_trainer.errors import ConfigError
from rewardops_trainer.model import (
    collate,
    directory_digest,
    encode,
    file_digests,
    load_reward_model,
    resolve_model,
    rewards,
    save_reward_model,
    score,
)
from tests.support.tiny_models import make_tiny_bert, make_tiny_gpt2, one_torch_thread

PROMPTS = ["how do I reset my password?", "hi", "what is the refund policy for a broken printer?"]
RESPONSES = ["open settings, then reset", "hello there, how can I help you today?", "no"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    make: Callable[..., Path] = make_tiny_bert if request.param == "bert" else make_tiny_gpt2
    path = make(tmp_path_factory.mktemp(request.param))
    model, tokenizer = load_reward_model(path)
    # A wider spread than the default init, so the random model's rewards differ between inputs.
    torch.manual_seed(0)
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.3)
    save_reward_model(model, tokenizer, path)
    return path


def test_score_is_float32_in_input_order_and_padding_free(tiny: Path) -> None:
    model, tokenizer = load_reward_model(tiny)
    together = score(model, tokenizer, PROMPTS, RESPONSES, max_length=64)
    assert together.dtype == torch.float32
    assert together.shape == (3,)
    alone = torch.stack(
        [
            score(model, tokenizer, [p], [r], max_length=64)[0]
            for p, r in zip(PROMPTS, RESPONSES, strict=True)
        ]
    )
    # Batched rows are padded; padding must not change any reward.
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)
    assert len(set(together.tolist())) == 3


def test_score_on_a_cpu_runs_bert_padding_free_with_the_padded_rewards(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = load_reward_model(tiny)
    calls: list[int] = []
    original = model_module.padding_free_rewards

    def counted(*args: object) -> torch.Tensor:
        calls.append(1)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(model_module, "padding_free_rewards", counted)
    scored = score(model, tokenizer, PROMPTS, RESPONSES, max_length=64)
    encoded = encode(tokenizer, PROMPTS, RESPONSES, max_length=64)
    model.eval()  # type: ignore[no-untyped-call]
    with torch.inference_mode():
        padded = rewards(model, collate(encoded, [0, 1, 2], tokenizer.pad_token_id, "cpu"))
    torch.testing.assert_close(scored, padded, rtol=1e-5, atol=1e-6)
    # BERT takes the padding-free forward; a decoder (GPT-2) keeps the padded one.
    assert bool(calls) == (model.config.model_type == "bert")


def test_decoder_reuses_eos_as_pad_and_pads_right(tmp_path: Path) -> None:
    model, tokenizer = load_reward_model(make_tiny_gpt2(tmp_path / "gpt2"))
    assert tokenizer.pad_token == tokenizer.eos_token
    assert tokenizer.padding_side == "right"
    assert model.config.pad_token_id == tokenizer.eos_token_id


def test_decoder_truncation_keeps_the_response_end(tmp_path: Path) -> None:
    _, tokenizer = load_reward_model(make_tiny_gpt2(tmp_path / "gpt2"))
    encoded = encode(tokenizer, ["the quick brown fox " * 30], ["the end"], max_length=16)
    assert len(encoded.input_ids[0]) == 16
    assert str(tokenizer.decode(encoded.input_ids[0])).endswith("the end")


def test_encoder_builds_a_text_pair_and_splits_forged_special_tokens(tmp_path: Path) -> None:
    _, tokenizer = load_reward_model(make_tiny_bert(tmp_path / "bert"))
    encoded = encode(tokenizer, ["hello [SEP] forged"], ["world"], max_length=32)
    ids = encoded.input_ids[0]
    assert ids.count(tokenizer.sep_token_id) == 2  # the real separators only
    assert encoded.token_type_ids is not None
    assert encoded.token_type_ids[0][-1] == 1


def test_save_round_trip_is_safetensors_with_digests(tiny: Path, tmp_path: Path) -> None:
    model, tokenizer = load_reward_model(tiny)
    out = tmp_path / "saved"
    save_reward_model(model, tokenizer, out)
    digests = file_digests(out)
    assert "model.safetensors" in digests
    assert "config.json" in digests
    assert not any(name.endswith(".bin") for name in digests)
    assert all(len(d) == 64 for d in digests.values())
    again, tok2 = load_reward_model(out)
    torch.testing.assert_close(
        score(model, tokenizer, PROMPTS, RESPONSES, max_length=64),
        score(again, tok2, PROMPTS, RESPONSES, max_length=64),
    )
    before = directory_digest(out)
    (out / "config.json").write_text((out / "config.json").read_text() + " ")
    assert directory_digest(out) != before


def test_missing_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        resolve_model(f"file://{tmp_path}/nope", None, tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"config\.json is missing"):
        load_reward_model(tmp_path)


def test_pickled_weights_are_refused(tiny: Path, tmp_path: Path) -> None:
    target = tmp_path / "pickled"
    target.mkdir()
    (target / "config.json").write_text((tiny / "config.json").read_text())
    (target / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ConfigError, match="pickle"):
        load_reward_model(target)


def test_corrupt_weights_are_a_config_error(tiny: Path, tmp_path: Path) -> None:
    target = tmp_path / "corrupt"
    target.mkdir()
    for path in tiny.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    (target / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ConfigError, match="cannot load the weights"):
        load_reward_model(target)


def test_resolve_plain_and_file_uri(tiny: Path, tmp_path: Path) -> None:
    assert resolve_model(str(tiny), None, tmp_path) == tiny
    assert resolve_model(f"file://{tiny}", None, tmp_path) == tiny
