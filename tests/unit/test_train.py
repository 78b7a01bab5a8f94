"""The training loop on tiny random models: learning, reproducibility, resume, memory options."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from rewardops_trainer.checkpoint import Checkpointer
from rewardops_trainer.contract import Hyperparameters, LoraSettings
from rewardops_trainer.evaluate import evaluate_model
from rewardops_trainer.model import load_reward_model, save_reward_model
from rewardops_trainer.storage import open_store
from rewardops_trainer.train import (
    PairSet,
    TrainingStopped,
    TrainOptions,
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
