from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rewardops_operator.api.crd import crd_yaml, custom_resource_definition, open_api_schema
from rewardops_operator.api.models import (
    AnalysisPhase,
    AnalysisStatus,
    CheckStatus,
    Condition,
    DataStatus,
    FeedbackEvaluationStatus,
    GateResult,
    HistoryEntry,
    ModelMetricsStatus,
    Phase,
    RewardModelUpdate,
    RewardModelUpdateStatus,
)
from rewardops_operator.api.validation import check_object, schema_validator
from rewardops_operator.cli import main
from tests.support.structural import prune, untyped_nodes

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_checked_in_crd_equals_the_generated_one(repo_root: Path) -> None:
    checked_in = (repo_root / "crds" / "rewardops.dev_rewardmodelupdates.yaml").read_text()
    assert checked_in == crd_yaml(), "crds/ is stale: run `rewardops crd -o crds/...`"


def test_crd_command_prints_the_generated_crd() -> None:
    result = CliRunner().invoke(main, ["crd"])
    assert result.exit_code == 0
    assert result.output == crd_yaml()


def test_crd_names_subresource_and_columns() -> None:
    crd = custom_resource_definition()
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "RewardModelUpdate",
        "rewardmodelupdates",
        ["rmu"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Candidate"] == ".status.candidate.heldOutAccuracy"
    assert columns["Served"] == ".status.baseline.heldOutAccuracy"
    assert columns["Model"] == ".status.servedModel"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_schema_is_structural() -> None:
    assert untyped_nodes(open_api_schema()) == []


def test_spec_has_no_floats() -> None:
    def types(node: dict[str, object]) -> list[str]:
        found = [str(node.get("type"))]
        for child in dict(node.get("properties", {})).values():  # type: ignore[call-overload]
            found += types(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += types(node[key])  # type: ignore[arg-type]
        return found

    assert "number" not in types(open_api_schema()["properties"]["spec"])


def full_status() -> RewardModelUpdateStatus:
    metrics = ModelMetricsStatus(
        model_uri="s3://m/runs/r1/model",
        held_out_accuracy="0.8123",
        golden_accuracy="0.9",
        mean_loss="0.41",
        length_correlation="-0.02",
        latency_ms_per_pair="3.1",
        reward_mean="-0.12",
        reward_std="1.3",
        score_counts=[0, 0, 1, 2, 3, 5, 8, 13, 8, 5, 3, 2, 1, 0, 0, 0],
    )
    return RewardModelUpdateStatus(
        phase=Phase.SUCCEEDED,
        observed_generation=3,
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Promoted",
                message="serving",
                last_transition_time=NOW,
                observed_generation=3,
            )
        ],
        run_id="r1",
        job_name="job-r1",
        started_at=NOW,
        finished_at=NOW,
        report_uri="s3://m/runs/r1/report.json",
        data=DataStatus(
            events_read=10,
            events_rejected=1,
            events_without_consent=2,
            redactions=3,
            pairs_train=4,
            pairs_validation=5,
            pairs_golden=6,
        ),
        candidate=metrics,
        baseline=metrics.model_copy(update={"model_uri": "s3://m/base"}),
        gates=[
            GateResult(
                name="minHeldOutAccuracy", passed=True, value="0.8", limit="0.6", message="ok"
            )
        ],
        served_model="s3://m/runs/r1/model",
        previous_model="s3://m/base",
        promoted_at=NOW,
        analysis=AnalysisStatus(
            phase=AnalysisPhase.PASSED,
            started_at=NOW,
            last_measured_at=NOW,
            measurements=3,
            checks=[
                CheckStatus(
                    name="error-ratio",
                    passed=3,
                    last_value="0.001",
                    limit="max 0.01",
                    last_message="value 0.001 within max 0.01",
                )
            ],
            feedback=FeedbackEvaluationStatus(
                attempts=2,
                job_name="r1-fb2",
                result_uri="s3://m/runs/r1/feedback/r1-fb2.json",
                started_at=NOW,
                finished_at=NOW,
                pairs_found=350,
            ),
            message="all 1 live check(s) passed",
        ),
        history=[
            HistoryEntry(
                run_id="r0",
                generation=2,
                phase=Phase.REJECTED,
                reason="GatesFailed",
                model_uri="s3://m/runs/r0/model",
                candidate_accuracy="0.5",
                finished_at=NOW,
            )
        ],
    )


def _assert_every_field_set(node: object, path: str = "status") -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            assert value is not None, f"{path}.{key} is unset: fill it so the test covers it"
            _assert_every_field_set(value, f"{path}.{key}")
    elif isinstance(node, list):
        assert node, f"{path} is empty"
        for item in node:
            _assert_every_field_set(item, path)


def test_a_full_status_survives_pruning_and_validation() -> None:
    status = full_status().model_dump(mode="json", by_alias=True)
    _assert_every_field_set(status)
    schema = open_api_schema()
    assert prune(status, schema["properties"]["status"]) == status
    obj = {
        "apiVersion": "rewardops.dev/v1alpha1",
        "kind": "RewardModelUpdate",
        "metadata": {"name": "x"},
        "spec": {
            "serving": {"deployment": "d"},
            "telemetry": {"uri": "s3://t/"},
            "output": {"uri": "s3://o/"},
        },
        "status": status,
    }
    assert list(schema_validator().iter_errors(obj)) == []
    assert RewardModelUpdate.model_validate(obj).status == full_status()


def test_minimal_resource_gets_useful_defaults(repo_root: Path) -> None:
    obj = yaml.safe_load((repo_root / "examples" / "minimal.yaml").read_text())
    update = RewardModelUpdate.model_validate(obj)
    assert update.spec.promotion.mode == "Automatic"
    assert update.spec.training.gpus == 1
    assert update.spec.gates.min_held_out_accuracy == "0.6"
    assert update.spec.serving.model_env == "REWARD_MODEL_URI"
    assert update.spec.telemetry.lookback == "7d"


@pytest.mark.parametrize("name", ["minimal.yaml", "full.yaml"])
def test_examples_pass_validate(repo_root: Path, name: str) -> None:
    result = CliRunner().invoke(main, ["validate", str(repo_root / "examples" / name)])
    assert result.exit_code == 0, result.output
    assert "1 RewardModelUpdate(s) in 1 file(s): ok" in result.output


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("window-reversed.yaml", "spec: telemetry.until must be after telemetry.since"),
        ("negative-gpus.yaml", "spec.training.gpus: -1 is less than the minimum of 0"),
        ("threshold-out-of-range.yaml", "spec.gates.minHeldOutAccuracy: 1.5 is not between 0"),
        ("float-in-spec-and-typo.yaml", "spec.training.hyperparameters.learningRate: 2e-05 is not"),
        ("float-in-spec-and-typo.yaml", "'batchSzie' was unexpected"),
    ],
)
def test_broken_examples_fail_naming_the_field(repo_root: Path, name: str, expected: str) -> None:
    path = repo_root / "examples" / "broken" / name
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}: document 1" in result.output
    assert expected in result.output


def test_validate_multi_document_file_skips_other_kinds(tmp_path: Path, repo_root: Path) -> None:
    good = (repo_root / "examples" / "minimal.yaml").read_text()
    bad = (repo_root / "examples" / "broken" / "negative-gpus.yaml").read_text()
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n"
    path = tmp_path / "many.yaml"
    path.write_text(f"{good}\n---\n{other}\n---\n{bad}")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "document 3 (negative-gpus): spec.training.gpus" in result.output
    assert "2 RewardModelUpdate(s) in 1 file(s): 1 problem(s)" in result.output


def test_validate_reports_yaml_syntax_errors_with_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("spec:\n  serving: [unclosed\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "invalid YAML: line" in result.output


def test_check_object_rejects_a_non_mapping() -> None:
    problems = check_object(["a"], "f.yaml", 1)
    assert [p.message for p in problems] == ["not a mapping"]


def test_validate_skips_yaml_that_is_not_a_resource(tmp_path: Path, repo_root: Path) -> None:
    workflow = "name: ci\non: [push]\njobs: {}\n"
    (tmp_path / "workflow.yaml").write_text(workflow)
    kindless = "apiVersion: rewardops.dev/v1alpha1\nmetadata: {name: x}\nspec: {}\n"
    (tmp_path / "kindless.yaml").write_text(kindless)
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "workflow.yaml")])
    assert result.exit_code == 0
    assert "0 RewardModelUpdate(s)" in result.output
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "kindless.yaml")])
    assert result.exit_code == 1, "a resource that lost its kind is still checked"


def test_a_window_time_without_offset_is_refused(tmp_path: Path, repo_root: Path) -> None:
    document = yaml.safe_load((repo_root / "examples" / "minimal.yaml").read_text())
    document["spec"]["telemetry"]["since"] = "2026-11-01T00:00:00"
    path = tmp_path / "naive.yaml"
    path.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "spec.telemetry.since: Input should have timezone info" in result.output
