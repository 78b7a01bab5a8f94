"""Training checkpoints in object storage, so a preempted Job pod resumes instead of restarting.

Layout under ``<run>/checkpoints/``: ``step-NNNNNNNN/`` holds the trainable weights and the
optimizer state (tensors in safetensors, the rest in JSON: no pickle), and ``latest.json``,
written last, names the complete one. Older step folders are deleted after a new
``latest.json`` is in place, so a pod killed mid-save leaves the previous checkpoint usable.

A checkpoint carries a fingerprint of the pairs and hyperparameters it was trained with; one
with another fingerprint is ignored, because resuming it would mix two different runs.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rewardops_trainer.storage import ObjectNotFound, ObjectStore, join_uri

LATEST = "latest.json"


@dataclass(frozen=True)
class Resumed:
    step: int
    extra: dict[str, Any]


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: param.detach().cpu().contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def _optimizer_parts(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Checkpointer:
    def __init__(self, store: ObjectStore, prefix: str, fingerprint: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.fingerprint = fingerprint

    def _key(self, *parts: str) -> str:
        return join_uri(self.prefix, *parts)

    def save(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        step: int,
        extra: dict[str, Any] | None = None,
    ) -> None:
        folder = f"step-{step:08d}"
        tensors, meta = _optimizer_parts(optimizer)
        with tempfile.TemporaryDirectory(prefix="rewardops-ckpt-") as tmp:
            scratch = Path(tmp)
            save_file(_trainable(model), scratch / "model.safetensors")
            save_file(tensors, scratch / "optimizer.safetensors")
            (scratch / "optimizer.json").write_text(json.dumps(meta))
            for name in ("model.safetensors", "optimizer.safetensors", "optimizer.json"):
                self.store.put_file(self._key(folder, name), scratch / name)
        latest = {"step": step, "folder": folder, "fingerprint": self.fingerprint}
        latest["extra"] = extra or {}
        self.store.write_bytes(self._key(LATEST), json.dumps(latest).encode())
        for info in list(self.store.list(self.prefix + "/" if self.prefix else "")):
            relative = info.key[len(self.prefix) :].lstrip("/") if self.prefix else info.key
            if relative.startswith("step-") and not relative.startswith(folder + "/"):
                self.store.delete(info.key)

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Resumed | None:
        """Restore the latest matching checkpoint into ``model`` and ``optimizer``, if any."""
        try:
            with self.store.open_read(self._key(LATEST)) as stream:
                latest = json.loads(stream.read())
        except ObjectNotFound:
            return None
        if latest.get("fingerprint") != self.fingerprint:
            return None
        folder = latest["folder"]
        with tempfile.TemporaryDirectory(prefix="rewardops-ckpt-") as tmp:
            scratch = Path(tmp)
            for name in ("model.safetensors", "optimizer.safetensors", "optimizer.json"):
                self.store.get_file(self._key(folder, name), scratch / name)
            weights = load_file(scratch / "model.safetensors")
            missing = set(_trainable(model)) - set(weights)
            if missing:
                return None  # a checkpoint of another model shape: start over
            model.load_state_dict(weights, strict=False)
            _restore_optimizer(
                optimizer,
                load_file(scratch / "optimizer.safetensors"),
                json.loads((scratch / "optimizer.json").read_text()),
            )
        return Resumed(step=int(latest["step"]), extra=dict(latest.get("extra", {})))
