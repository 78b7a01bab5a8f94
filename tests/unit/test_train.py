"""The training loop on tiny random models: learning, reproducibility, resume, memory options."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rewardops_trainer.checkpoint import Checkpointer
from rewardops_trainer.contract import Hyperparameters, LoraSettings
from rewardops_trainer.evaluate import evaluate_model
from rewardops_trainer.model import (
    collate,
    encode,
    load_reward_model,
    padding_free_model,
    padding_free_rewards,
    rewards,
    save_reward_model,
)
from rewardops_trainer.storage import open_store
from rewardops_trainer.train import (
    PairSet,
    TrainingStopped,
    TrainOptions,
    prepare_model,
    read_pairs,
    train_reward_model,
)
from tests.support.tiny_models import (
    make_tiny_bert,
    make_tiny_gpt2,
    one_torch_thread,
    planted_pairs,
    write_pairs,
)

HP = Hyperparameters(learning_rate=1e-3, batch_size=16, epochs=1, max_length=64, seed=7)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[PairSet, PairSet]:
    root = tmp_path_factory.mktemp("pairs")
    train = read_pairs(write_pairs(root / "train.jsonl", planted_pairs(160, seed=1)))
    held_out = read_pairs(write_pairs(root / "validation.jsonl", planted_pairs(48, seed=2)))
    return train, held_out


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


@pytest.mark.parametrize("make", [make_tiny_bert, make_tiny_gpt2], ids=["bert", "gpt2"])
def test_tiny_model_learns_the_planted_preference(
    make: Callable[[Path], Path], tmp_path: Path, data: tuple[PairSet, PairSet]
) -> None:
    train, held_out = data
    model, tokenizer = load_reward_model(make(tmp_path / "model"))
    before = evaluate_model(model, tokenizer, held_out, max_length=64)
    hp = HP.model_copy(update={"epochs": 2})
    trained, result = train_reward_model(model, tokenizer, train, hp)
    after = evaluate_model(trained, tokenizer, held_out, max_length=64)
    assert result.steps == 20
    assert result.pairs_per_second > 0
    assert after.accuracy >= 0.9
    assert after.accuracy > before.accuracy or before.accuracy == 1.0
    assert after.mean_loss < before.mean_loss


def test_same_seed_gives_the_same_weights(bert: Path, data: tuple[PairSet, PairSet]) -> None:
    runs = []
    for _ in range(2):
        model, tokenizer = load_reward_model(bert)
        trained, _ = train_reward_model(
            model, tokenizer, data[0], HP.model_copy(update={"max_steps": 4})
        )
        runs.append(_state(trained))
    for name, value in runs[0].items():
        torch.testing.assert_close(value, runs[1][name], rtol=0, atol=0, msg=name)


def test_stopped_run_resumes_from_its_checkpoint(
    bert: Path, tmp_path: Path, data: tuple[PairSet, PairSet]
) -> None:
    hp = HP.model_copy(update={"max_steps": 6})
    model, tokenizer = load_reward_model(bert)
    uninterrupted, _ = train_reward_model(model, tokenizer, data[0], hp)

    store = open_store(f"file://{tmp_path}/run/checkpoints")
    steps_done: list[int] = []

    def stop_after_three() -> bool:
        steps_done.append(1)
        return len(steps_done) == 3

    model, tokenizer = load_reward_model(bert)
    options = TrainOptions(checkpointer=Checkpointer(store, "", "fp"), should_stop=stop_after_three)
    with pytest.raises(TrainingStopped) as stopped:
        train_reward_model(model, tokenizer, data[0], hp, options)
    assert stopped.value.step == 3
    assert store.exists("latest.json")

    model, tokenizer = load_reward_model(bert)
    options = TrainOptions(checkpointer=Checkpointer(store, "", "fp"))
    resumed, result = train_reward_model(model, tokenizer, data[0], hp, options)
    assert result.resumed_from_step == 3
    for name, value in _state(uninterrupted).items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)
    # Only the newest checkpoint is kept.
    folders = {info.key.split("/")[0] for info in store.list() if info.key.startswith("step-")}
    assert folders == {"step-00000006"}


def test_checkpoint_of_other_data_is_ignored(
    bert: Path, tmp_path: Path, data: tuple[PairSet, PairSet]
) -> None:
    store = open_store(f"file://{tmp_path}/ckpt")
    hp = HP.model_copy(update={"max_steps": 2})
    model, tokenizer = load_reward_model(bert)
    train_reward_model(
        model, tokenizer, data[0], hp, TrainOptions(checkpointer=Checkpointer(store, "", "a"))
    )
    model, tokenizer = load_reward_model(bert)
    options = TrainOptions(checkpointer=Checkpointer(store, "", "b"))
    _, result = train_reward_model(model, tokenizer, data[0], hp, options)
    assert result.resumed_from_step is None


def test_gradient_accumulation_and_checkpointing_match_plain_steps(
    bert: Path, data: tuple[PairSet, PairSet]
) -> None:
    hp = HP.model_copy(update={"max_steps": 3, "reward_centering": 0.01})
    variants = [
        hp,
        hp.model_copy(update={"gradient_accumulation_steps": 4}),
        hp.model_copy(update={"gradient_checkpointing": True}),
    ]
    states = []
    for variant in variants:
        model, tokenizer = load_reward_model(bert)
        trained, _ = train_reward_model(_without_dropout(model), tokenizer, data[0], variant)  # type: ignore[arg-type]
        assert not getattr(trained, "is_activation_checkpointing", False)
        states.append(_state(trained))
    for other in states[1:]:
        for name, value in states[0].items():
            torch.testing.assert_close(other[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_lora_trains_adapters_and_publishes_a_plain_model(
    bert: Path, tmp_path: Path, data: tuple[PairSet, PairSet]
) -> None:
    model, tokenizer = load_reward_model(bert)
    base = _state(model)
    hp = HP.model_copy(update={"max_steps": 3, "lora": LoraSettings(rank=4, alpha=8)})
    trained, _ = train_reward_model(model, tokenizer, data[0], hp)
    state = _state(trained)
    assert set(state) == set(base)  # adapters merged away: the same keys as the base model
    torch.testing.assert_close(
        state["bert.embeddings.word_embeddings.weight"],
        base["bert.embeddings.word_embeddings.weight"],
    )
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(state[query], base[query])
    save_reward_model(trained, tokenizer, tmp_path / "out")
    reloaded, _ = load_reward_model(tmp_path / "out")
    torch.testing.assert_close(reloaded.state_dict()[query], state[query])


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("lora", [False, True], ids=["plain", "lora"])
def test_padding_free_forward_equals_the_padded_one(
    lora: bool, bert: Path, data: tuple[PairSet, PairSet]
) -> None:
    model, tokenizer = load_reward_model(bert)
    hp = HP.model_copy(update={"lora": LoraSettings(rank=4, alpha=8) if lora else None})
    prepared = prepare_model(model, hp).eval()
    base = padding_free_model(prepared)
    assert base is not None
    pairs = data[0]
    # Rows of many lengths, token types of prompt and response, in no particular order.
    encoded = encode(tokenizer, pairs.prompts[:12], pairs.rejected[:12], max_length=64)
    rows = [5, 0, 11, 3, 7, 1, 9]
    assert len({len(encoded.input_ids[i]) for i in rows}) > 3

    padded = rewards(prepared, collate(encoded, rows, int(tokenizer.pad_token_id), "cpu"))
    (padded * torch.arange(1.0, 8.0)).sum().backward()  # type: ignore[no-untyped-call]
    expected = _grads(prepared)
    free = padding_free_rewards(base, encoded, rows, "cpu")
    (free * torch.arange(1.0, 8.0)).sum().backward()  # type: ignore[no-untyped-call]
    actual = _grads(prepared)

    torch.testing.assert_close(free, padded, rtol=1e-5, atol=1e-6)
    assert set(actual) == set(expected)
    for name, value in expected.items():
        if name.endswith("key.bias"):
            continue  # its true gradient is zero (softmax ignores a shift shared by all keys)
        torch.testing.assert_close(actual[name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_training_without_padding_matches_padded_training(
    bert: Path, data: tuple[PairSet, PairSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rewardops_trainer.train as train_module

    calls: list[int] = []

    def counted(*args: Any) -> torch.Tensor:
        calls.append(1)
        return padding_free_rewards(*args)

    monkeypatch.setattr(train_module, "padding_free_rewards", counted)
    hp = HP.model_copy(update={"max_steps": 3})
    states = []
    for free in (True, False):
        if not free:
            monkeypatch.setattr(train_module, "padding_free_model", lambda _: None)
        model, tokenizer = load_reward_model(bert)
        trained, _ = train_reward_model(_without_dropout(model), tokenizer, data[0], hp)  # type: ignore[arg-type]
        states.append(_state(trained))
        assert len(calls) == 3  # one forward per step on the padding-free run, none after
    for name, value in states[0].items():
        torch.testing.assert_close(states[1][name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_only_plain_bert_classifiers_run_padding_free(tmp_path: Path) -> None:
    gpt2, _ = load_reward_model(make_tiny_gpt2(tmp_path / "gpt2"))
    assert padding_free_model(gpt2) is None
    bert, _ = load_reward_model(make_tiny_bert(tmp_path / "bert"))
    assert padding_free_model(bert) is bert
    bert.config.is_decoder = True
    assert padding_free_model(bert) is None
