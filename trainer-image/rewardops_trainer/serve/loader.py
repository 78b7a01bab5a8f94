"""Load the model to serve and prove it works before the server says it is ready.

Readiness means: the model resolved and loaded (safetensors only), its files match the run
report's artifact digests when a report is named (or ``expected_digest`` when given), and a
smoke test gave finite scores that repeat exactly enough. Any failure is a :class:`ConfigError`
whose message ``/readyz`` shows, so a rollout of a bad model stalls with the reason visible.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rewardops_trainer.contract import StorageSettings
from rewardops_trainer.contract.report import MODEL_DIR, Report
from rewardops_trainer.errors import ConfigError
from rewardops_trainer.serve.batcher import Scorer
from rewardops_trainer.storage import open_store

_SMOKE_PROMPTS = ("What is 2 + 2?", "Name a primary colour.")
_SMOKE_RESPONSES = ("2 + 2 is 4.", "Blue is a primary colour; so are red and yellow.")
# bf16 on a GPU may pick different kernels between calls; a real bug differs by far more.
_SMOKE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ModelSource:
    uri: str
    report_uri: str | None = None
    expected_digest: str | None = None
    max_length: int = 512
    device: str = "auto"
    # Intra-op threads; None keeps torch's default (every core it sees, which in a container
    # with a CPU limit oversubscribes the quota).
    threads: int | None = None
    cache_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "rewardops")
    storage: StorageSettings = field(default_factory=StorageSettings)


@dataclass(frozen=True)
class LoadedModel:
    uri: str
    digest: str
    version: str
    device: str
    scorer: Scorer


def model_digest(files: Mapping[str, str]) -> str:
    """One SHA-256 over a model directory's files, equal to ``model.directory_digest`` (the
    lineage's form), computed from digests already taken rather than reading the weights twice."""
    lines = "".join(f"{path}\t{_bare(digest)}\n" for path, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def check_against_report(files: Mapping[str, str], report: Report) -> None:
    prefix = MODEL_DIR + "/"
    expected = {
        path[len(prefix) :]: _bare(digest)
        for path, digest in report.artifacts.items()
        if path.startswith(prefix)
    }
    if not expected:
        raise ConfigError(f"report of run {report.run_id!r} lists no {prefix} artifacts")
    actual = {path: _bare(digest) for path, digest in files.items()}
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    problems = [
        f"{label}: {', '.join(paths[:5])}"
        for label, paths in (
            ("missing", missing),
            ("not in report", extra),
            ("digest differs", changed),
        )
        if paths
    ]
    if problems:
        raise ConfigError(
            f"model files do not match the report of run {report.run_id!r}: " + "; ".join(problems)
        )


def read_report(uri: str, storage: StorageSettings) -> Report:
    parent, _, name = uri.rstrip("/").rpartition("/")
    if not parent or not name:
        raise ConfigError(f"report URI {uri!r} must name a file, e.g. .../<run-id>/report.json")
    with open_store(parent, storage).open_read(name) as stream:
        raw = stream.read()
    try:
        return Report.model_validate_json(raw)
    except ValueError as error:
        raise ConfigError(f"report {uri!r} is not a valid report: {error}") from None


def smoke_test(scorer: Scorer) -> None:
    first = list(scorer(_SMOKE_PROMPTS, _SMOKE_RESPONSES))
    second = list(scorer(_SMOKE_PROMPTS, _SMOKE_RESPONSES))
    if len(first) != len(_SMOKE_PROMPTS):
        raise ConfigError(f"smoke test: {len(first)} scores for {len(_SMOKE_PROMPTS)} pairs")
    if not all(math.isfinite(value) for value in first + second):
        raise ConfigError(f"smoke test: non-finite scores {first}")
    if any(
        abs(a - b) > _SMOKE_TOLERANCE * max(1.0, abs(a)) for a, b in zip(first, second, strict=True)
    ):
        raise ConfigError(f"smoke test: scores are not deterministic ({first} then {second})")


def load_model(source: ModelSource) -> LoadedModel:
    """Blocking: resolve, verify, load and smoke-test the model (run it off the event loop)."""
    import torch

    from rewardops_trainer import model as reward_model

    path = reward_model.resolve_model(source.uri, source.storage, source.cache_dir)
    files = reward_model.file_digests(path)
    digest = model_digest(files)
    version = digest[:12]
    if source.report_uri:
        report = read_report(source.report_uri, source.storage)
        check_against_report(files, report)
        version = report.run_id
    if source.expected_digest and _bare(source.expected_digest) != digest:
        raise ConfigError(
            f"model digest {digest} differs from the expected {_bare(source.expected_digest)}"
        )
    if source.threads is not None:
        # Called on the model's worker thread, where every forward runs.
        torch.set_num_threads(source.threads)
    device = source.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else None
    model, tokenizer = reward_model.load_reward_model(path, device=device, dtype=dtype)
    # Longer inputs than the position table would fail every forward they share a batch with.
    positions = getattr(model.config, "max_position_embeddings", None)
    max_length = (
        min(source.max_length, positions) if isinstance(positions, int) else source.max_length
    )

    def scorer(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        scores = reward_model.score(
            model, tokenizer, prompts, responses, max_length=max_length, device=device
        )
        return [float(value) for value in scores.tolist()]

    smoke_test(scorer)
    return LoadedModel(uri=source.uri, digest=digest, version=version, device=device, scorer=scorer)


def _bare(digest: str) -> str:
    return digest.removeprefix("sha256:").lower()
