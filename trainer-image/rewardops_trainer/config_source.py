"""Reading a command's config: from ``--config`` (a path, a file:// or s3:// URI, or ``-`` for
stdin) or, without one, from the environment variable the operator's Job sets."""

from __future__ import annotations

import os
import sys
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from rewardops_trainer.errors import ConfigError
from rewardops_trainer.storage import open_store

Config = TypeVar("Config", bound=BaseModel)


def describe(error: ValidationError) -> str:
    """Every problem on one line, each led by the camelCase path of its field."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def load_config(model: type[Config], source: str | None, *, env: str, what: str) -> Config:
    """``model`` from ``source``, or from the JSON in ``$env`` when ``source`` is None.

    Raises :class:`ConfigError` (exit code 3: not worth retrying) naming where it came from
    and every bad field."""
    if source is None:
        text = os.environ.get(env)
        if not text:
            raise ConfigError(f"no {what}: pass --config or set {env}")
        where = f"${env}"
    elif source == "-":
        text, where = sys.stdin.read(), "stdin"
    else:
        parent, _, name = source.rstrip("/").rpartition("/")
        if not name:
            raise ConfigError(f"--config {source!r} names no file")
        with open_store(parent or ".").open_read(name) as stream:
            text, where = stream.read().decode("utf-8"), source
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        raise ConfigError(f"{what} from {where}: {describe(error)}") from None
