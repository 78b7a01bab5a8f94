from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from rewardops_trainer.contract import Report
from rewardops_trainer.errors import ConfigError
from rewardops_trainer.serve.loader import check_against_report, model_digest, smoke_test


def make_report(artifacts: dict[str, str], run_id: str = "run-1") -> Report:
    """A valid report whose only meaningful parts here are the run id and the artifacts."""
    metrics = {
        "pairs": 10,
        "accuracy": 0.7,
        "meanLoss": 0.6,
        "meanMargin": 0.3,
        "rewardMean": 0.0,
        "rewardStd": 1.0,
        "calibrationError": 0.05,
        "lengthCorrelation": 0.1,
        "latencyMsPerPair": 1.0,
    }
    return Report.model_validate(
        {
            "runId": run_id,
            "createdAt": "2026-01-01T00:00:00Z",
            "candidate": {"modelUri": "file:///m", "heldOut": metrics},
            "data": {
                "eventsRead": 100,
                "eventsRejected": 0,
                "eventsWithoutConsent": 0,
                "redactions": 0,
                "pairsTrain": 90,
                "pairsValidation": 10,
            },
            "training": {
                "steps": 1,
                "epochs": 1.0,
                "finalLoss": 0.6,
                "pairsPerSecond": 1.0,
                "device": "cpu",
            },
            "lineage": {
                "telemetryUri": "file:///t",
                "since": "2026-01-01T00:00:00Z",
                "until": "2026-01-02T00:00:00Z",
                "inputDigest": "0",
                "pairsDigest": "0",
                "configDigest": "0",
                "baseModelUri": "file:///b",
                "baseModelDigest": "0",
                "codeVersion": "test",
            },
            "artifacts": artifacts,
        }
    )


def test_model_digest_is_the_lineage_directory_digest(tmp_path: Path) -> None:
    from rewardops_trainer.model import directory_digest, file_digests

    (tmp_path / "sub").mkdir()
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub" / "w.safetensors").write_bytes(b"weights")
    assert model_digest(file_digests(tmp_path)) == directory_digest(tmp_path)
    before = model_digest(file_digests(tmp_path))
    (tmp_path / "config.json").write_text("{ }")
    assert model_digest(file_digests(tmp_path)) != before


def test_prefixed_and_bare_digests_agree() -> None:
    assert model_digest({"a": "sha256:ABCD"}) == model_digest({"a": "abcd"})


FILES = {"config.json": "1" * 64, "model.safetensors": "2" * 64}


def test_files_matching_the_report_pass() -> None:
    artifacts = {f"model/{k}": f"sha256:{v}" for k, v in FILES.items()}
    artifacts["report-extra/manifest.json"] = "3" * 64
    check_against_report(FILES, make_report(artifacts))


@pytest.mark.parametrize(
    ("artifacts", "message"),
    [
        ({"model/config.json": "1" * 64}, "not in report: model.safetensors"),
        (
            {**{f"model/{k}": v for k, v in FILES.items()}, "model/x.txt": "4" * 64},
            "missing: x.txt",
        ),
        (
            {"model/config.json": "1" * 64, "model/model.safetensors": "9" * 64},
            "digest differs: model.safetensors",
        ),
        ({"manifest.json": "1" * 64}, "lists no model/ artifacts"),
    ],
)
def test_mismatches_with_the_report_name_the_files(artifacts: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_against_report(FILES, make_report(artifacts))


def test_smoke_test_accepts_a_deterministic_finite_scorer() -> None:
    smoke_test(lambda prompts, responses: [float(len(r)) for r in responses])


def test_smoke_test_rejects_non_finite_scores() -> None:
    with pytest.raises(ConfigError, match="non-finite"):
        smoke_test(lambda prompts, responses: [math.inf] * len(responses))


def test_smoke_test_rejects_drifting_scores() -> None:
    calls: list[int] = []

    def drifting(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        calls.append(1)
        return [float(len(calls))] * len(responses)

    with pytest.raises(ConfigError, match="not deterministic"):
        smoke_test(drifting)


def test_smoke_test_rejects_a_wrong_count() -> None:
    with pytest.raises(ConfigError, match="1 scores for 2 pairs"):
        smoke_test(lambda prompts, responses: [0.0])
