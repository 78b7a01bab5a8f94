"""The real operator (kopf, KopfRunner) against the stand-in API server, a real S3 server
holding report.json, and a harness playing kubelet and the Job/Deployment controllers."""

from __future__ import annotations

import base64
import copy
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from prometheus_client import REGISTRY

from rewardops_operator.kube.permissions import policy_rules
from rewardops_trainer.storage import open_store, put_dir
from rewardops_trainer.synthetic import generate_golden, generate_telemetry
from tests.support.kube_emulator import RunningCluster, running_cluster
from tests.support.kubelet import (
    Kubelet,
    Player,
    fail_with,
    hold_until,
    run_command,
    write_report,
)
from tests.support.s3server import S3Server, free_port

NS = "ml"
API = f"/apis/rewardops.dev/v1alpha1/namespaces/{NS}/rewardmodelupdates"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
SERVED = "s3://models/served/model"
TIMEOUT = 20.0


@pytest.fixture
def cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path, s3_env: S3Server
) -> Iterator[RunningCluster]:
    from kubernetes.config import kube_config

    with running_cluster() as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", NS)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # kopf logs in through the kubernetes client, which froze $KUBECONFIG at its import.
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.setenv("REWARDOPS_STORAGE_ENDPOINT", s3_env.endpoint)
        monkeypatch.setenv("REWARDOPS_STORAGE_SECURE", "false")
        monkeypatch.setenv("REWARDOPS_TRAINER_IMAGE", "trainer:test")
        cluster.create("/api/v1/namespaces", {"metadata": {"name": NS}})
        crd = yaml.safe_load(
            (repo_root / "crds" / "rewardops.dev_rewardmodelupdates.yaml").read_text()
        )
        cluster.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        cluster.create(
            f"/api/v1/namespaces/{NS}/secrets",
            {
                "metadata": {"name": "s3-creds"},
                "data": {
                    "AWS_ACCESS_KEY_ID": base64.b64encode(s3_env.access_key.encode()).decode(),
                    "AWS_SECRET_ACCESS_KEY": base64.b64encode(s3_env.secret_key.encode()).decode(),
                },
            },
        )
        yield cluster
        assert_within_rbac(cluster)


def assert_within_rbac(cluster: RunningCluster) -> None:
    """Every request the operator made (kopf and the adapter) is allowed by permissions.py."""
    rules = policy_rules()
    calls = cluster.call(lambda: list(cluster.emulator.calls))
    operator_calls = {c[1:] for c in calls if not c[0].startswith("Python-urllib")}
    assert operator_calls, "the operator made no requests"
    denied = [
        call
        for call in sorted(operator_calls)
        if not any(
            call[1] in rule["apiGroups"]
            and call[2] in rule["resources"]
            and call[0] in rule["verbs"]
            for rule in rules
        )
    ]
    assert not denied, f"requests outside kube/permissions.py: {denied}"


@contextmanager
def operator() -> Iterator[KopfRunner]:
    args = ["run", "--standalone", "--namespace", NS, "-m", "rewardops_operator.handlers"]
    with KopfRunner(args, timeout=30) as runner:
        yield runner
    assert runner.exit_code == 0, runner.output
    assert "Traceback" not in runner.output, runner.output


def deployment(name: str = "scorer", model: str = SERVED) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 60,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "scorer",
                            "image": "trainer:test",
                            "args": ["serve"],
                            "env": [
                                {"name": "LOG_LEVEL", "value": "info"},
                                {"name": "REWARD_MODEL_URI", "value": model},
                            ],
                        }
                    ]
                },
            },
        },
    }


def update(name: str, bucket: str, serving: str = "scorer", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "rewardops.dev/v1alpha1",
        "kind": "RewardModelUpdate",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serving": {"deployment": serving},
            "telemetry": {"uri": f"s3://{bucket}/telemetry", "lookback": "1d"},
            "output": {"uri": f"s3://{bucket}/runs"},
            "storage": {"credentials": {"secretName": "s3-creds"}},
            "training": {"gpus": 0},
        },
    }
    body["spec"].update(spec)
    return body


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def phase(cluster: RunningCluster, name: str, wanted: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        obj = cluster.get(f"{API}/{name}")
        return obj if obj and (obj.get("status") or {}).get("phase") == wanted else None

    return check


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in obj["status"]["conditions"] if c["type"] == type_]
    assert found, f"no {type_} condition in {obj['status']['conditions']}"
    return dict(found[0])


def model_env(obj: dict[str, Any]) -> str:
    env = obj["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(item["value"] for item in env if item["name"] == "REWARD_MODEL_URI"))


def job_posts(cluster: RunningCluster) -> int:
    creates = cluster.call(lambda: list(cluster.emulator.creates))
    return sum(1 for create in creates if create.startswith(f"jobs {NS}/"))


def events_for(cluster: RunningCluster, name: str) -> list[dict[str, Any]]:
    items = cluster.items(f"/api/v1/namespaces/{NS}/events")
    return [e for e in items if e.get("involvedObject", {}).get("name") == name]


def metric(name: str, **labels: str) -> float:
    """A sample of the operator's Prometheus metrics (the operator runs in this process)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def kubelet(cluster: RunningCluster, player: Player, **kwargs: Any) -> Kubelet:
    return Kubelet(cluster, NS, player, **kwargs)


def test_passing_candidate_is_promoted(cluster: RunningCluster, bucket: str) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    before = cluster.get(f"{DEPLOYMENTS}/scorer")
    succeeded = metric("rewardops_updates_total", outcome="Succeeded")
    with kubelet(cluster, write_report(candidate=0.82, baseline=0.7)), operator():
        cluster.create(API, update("fresh", bucket))
        done = wait_for("Succeeded", phase(cluster, "fresh", "Succeeded"))
    assert metric("rewardops_updates_total", outcome="Succeeded") == succeeded + 1
    assert metric("rewardops_stage_duration_seconds_count", stage="Training") >= 1

    status = done["status"]
    candidate = f"s3://{bucket}/runs/{status['runId']}/model"
    assert status["servedModel"] == candidate
    assert status["previousModel"] == SERVED
    assert status["candidate"]["heldOutAccuracy"] == "0.8200"
    assert condition(done, "Ready")["status"] == "True"
    assert condition(done, "Promoted")["reason"] == "RolloutComplete"

    after = cluster.get(f"{DEPLOYMENTS}/scorer")
    assert model_env(after) == candidate
    # Only the model env var, pod-template annotations and the operator's own annotations
    # changed; everything else (other env vars, image, replicas, labels) is as it was.
    changed, original = copy.deepcopy(after), copy.deepcopy(before)
    for obj in (changed, original):
        obj.pop("status", None)
        for key in ("resourceVersion", "generation", "annotations", "managedFields"):
            obj["metadata"].pop(key, None)
        obj["spec"]["template"]["metadata"].pop("annotations", None)
        obj["spec"]["template"]["spec"]["containers"][0]["env"] = [
            e
            for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"] != "REWARD_MODEL_URI"
        ]
    assert changed == original
    annotations = after["metadata"].get("annotations", {})
    assert "rewardops.dev/promotion-lock" not in annotations
    assert all(k.startswith("rewardops.dev/") for k in annotations)
    assert after["spec"]["template"]["metadata"]["annotations"]

    [job] = cluster.items(JOBS)
    assert job["metadata"]["ownerReferences"][0]["name"] == "fresh"
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "rewardops"


def test_failing_gate_leaves_deployment_untouched(cluster: RunningCluster, bucket: str) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    before = cluster.get(f"{DEPLOYMENTS}/scorer")
    with kubelet(cluster, write_report(candidate=0.55, baseline=0.7)), operator():
        cluster.create(API, update("worse", bucket))
        done = wait_for("Rejected", phase(cluster, "worse", "Rejected"))

    assert condition(done, "GatesPassed")["reason"] == "GatesFailed"
    assert (
        "held-out accuracy 0.5500 is below the minimum" in condition(done, "GatesPassed")["message"]
    )
    failed = [gate["name"] for gate in done["status"]["gates"] if not gate["passed"]]
    assert "minHeldOutAccuracy" in failed
    after = cluster.get(f"{DEPLOYMENTS}/scorer")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["metadata"].get("annotations") == before["metadata"].get("annotations")


def test_model_that_cannot_load_is_rolled_back(cluster: RunningCluster, bucket: str) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    harness = kubelet(cluster, write_report(candidate=0.9), can_load=lambda uri: uri == SERVED)
    rollbacks = metric("rewardops_rollbacks_total")
    with harness, operator():
        cluster.create(API, update("broken", bucket))
        done = wait_for("RolledBack", phase(cluster, "broken", "RolledBack"))
        warnings = wait_for(
            "a Warning event",
            lambda: [e for e in events_for(cluster, "broken") if e["type"] == "Warning"],
        )

    assert metric("rewardops_rollbacks_total") == rollbacks + 1
    rolled = condition(done, "RolledBack")
    assert rolled["status"] == "True"
    assert rolled["reason"] == "ProgressDeadlineExceeded"
    assert done["status"]["servedModel"] == SERVED
    after = cluster.get(f"{DEPLOYMENTS}/scorer")
    assert model_env(after) == SERVED
    assert "rewardops.dev/promotion-lock" not in after["metadata"].get("annotations", {})
    assert any(e["reason"] == "ProgressDeadlineExceeded" for e in warnings)
    # The candidate was in the Deployment once (the promotion), then restored.
    history = cluster.call(
        lambda: list(cluster.emulator.objects["apps/v1/deployments", NS, "scorer"].history)
    )
    served = [model_env(dict(v.raw)) for v in history if v is not None]
    assert served[0] == SERVED
    assert served[-1] == SERVED
    assert f"s3://{bucket}/runs/{done['status']['runId']}/model" in served


def test_failed_job_ends_failed_with_the_trainers_message(
    cluster: RunningCluster, bucket: str
) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    message = "error: telemetry window holds 12 pairs, fewer than pairs.minPairs=100"
    with kubelet(cluster, fail_with(message, exit_code=3)), operator():
        cluster.create(API, update("starved", bucket))
        done = wait_for("Failed", phase(cluster, "starved", "Failed"))

    trained = condition(done, "Trained")
    assert trained["reason"] == "JobFailed"
    assert message in trained["message"]
    assert condition(done, "Ready")["status"] == "False"
    assert model_env(cluster.get(f"{DEPLOYMENTS}/scorer")) == SERVED


def test_operator_restart_mid_training_creates_no_second_job(
    cluster: RunningCluster, bucket: str
) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    release = threading.Event()
    harness = kubelet(cluster, hold_until(release, write_report(candidate=0.8)))
    with harness:
        with operator():
            cluster.create(API, update("patient", bucket))
            wait_for("Training", phase(cluster, "patient", "Training"))
            wait_for(
                "the Job running",
                lambda: (
                    (cluster.get(f"{JOBS}/{harness.started[0]}") or {})
                    .get("status", {})
                    .get("active")
                    if harness.started
                    else None
                ),
            )
        # Operator gone; the Job goes on. A fresh operator must adopt it, not start another.
        seen = len(cluster.call(lambda: list(cluster.emulator.calls)))

        def reobserved_job() -> bool:
            calls = cluster.call(lambda: list(cluster.emulator.calls))[seen:]
            return any(call[1:4] == ("get", "batch", "jobs") for call in calls)

        with operator():
            wait_for("the new operator to observe the Job", reobserved_job)
            assert phase(cluster, "patient", "Training")()
            release.set()
            wait_for("Succeeded", phase(cluster, "patient", "Succeeded"))

    assert job_posts(cluster) == 1
    assert len(harness.started) == 1
    assert len(cluster.items(JOBS)) == 1


def test_two_updates_on_one_deployment_are_serialised(cluster: RunningCluster, bucket: str) -> None:
    cluster.create(DEPLOYMENTS, deployment())
    harness = kubelet(cluster, write_report(candidate=0.8))
    harness.paused.set()  # rollouts wait: the first promotion holds the lock
    with harness, operator():
        cluster.create(API, update("first", bucket))
        wait_for("first Verifying", phase(cluster, "first", "Verifying"))
        cluster.create(API, update("second", bucket))

        def waiting() -> bool:
            obj = cluster.get(f"{API}/second")
            conditions = (obj.get("status") or {}).get("conditions", []) if obj else []
            return any(
                c["type"] == "Promoted" and c["reason"] == "WaitingForLock" for c in conditions
            )

        wait_for("second waiting for the lock", waiting)
        deployment_now = cluster.get(f"{DEPLOYMENTS}/scorer")
        assert deployment_now["metadata"]["annotations"]["rewardops.dev/promotion-lock"].startswith(
            f"{NS}/first"
        )
        first_run = cluster.get(f"{API}/first")["status"]["runId"]
        assert model_env(deployment_now) == f"s3://{bucket}/runs/{first_run}/model"

        harness.paused.clear()
        wait_for("first Succeeded", phase(cluster, "first", "Succeeded"))
        second = wait_for("second Succeeded", phase(cluster, "second", "Succeeded"))

    assert second["status"]["previousModel"] == f"s3://{bucket}/runs/{first_run}/model"
    final = cluster.get(f"{DEPLOYMENTS}/scorer")
    assert model_env(final) == second["status"]["servedModel"]
    assert "rewardops.dev/promotion-lock" not in final["metadata"].get("annotations", {})


def test_deletion_mid_run_stops_the_job_and_releases_the_lock(
    cluster: RunningCluster, bucket: str
) -> None:
    cluster.create(DEPLOYMENTS, deployment("a"))
    cluster.create(DEPLOYMENTS, deployment("b"))
    release = threading.Event()

    def player(played: Any) -> Any:
        if played.run_config().run_id.startswith("training"):
            return hold_until(release, write_report(candidate=0.8))(played)
        return write_report(candidate=0.8)(played)

    harness = kubelet(cluster, player)
    harness.paused.set()
    with harness, operator():
        cluster.create(API, update("training", bucket, serving="a"))
        cluster.create(API, update("verifying", bucket, serving="b"))
        training = wait_for("Training", phase(cluster, "training", "Training"))
        wait_for("Verifying", phase(cluster, "verifying", "Verifying"))
        assert (
            "rewardops.dev/promotion-lock"
            in cluster.get(f"{DEPLOYMENTS}/b")["metadata"]["annotations"]
        )

        cluster.delete(f"{API}/training")
        cluster.delete(f"{API}/verifying")
        wait_for("both updates gone", lambda: not cluster.items(API))
        job = training["status"]["jobName"]
        wait_for("the Job gone", lambda: cluster.get(f"{JOBS}/{job}") is None)

    assert "rewardops.dev/promotion-lock" not in cluster.get(f"{DEPLOYMENTS}/b")["metadata"].get(
        "annotations", {}
    )


def test_bad_spec_gets_a_clear_condition_and_no_job(cluster: RunningCluster, bucket: str) -> None:
    invalid = update("invalid", bucket)
    invalid["spec"]["training"]["gpus"] = -1  # the CRD schema forbids it; the stand-in does not
    with kubelet(cluster, write_report(candidate=0.8)), operator():
        cluster.create(API, update("orphan", bucket, serving="missing"))
        cluster.create(API, invalid)
        orphan = wait_for("orphan Failed", phase(cluster, "orphan", "Failed"))
        bad = wait_for("invalid Failed", phase(cluster, "invalid", "Failed"))

    ready = condition(orphan, "Ready")
    assert ready["reason"] == "DeploymentNotFound"
    assert "spec.serving.deployment" in ready["message"]
    assert "'missing'" in ready["message"]
    invalid_ready = condition(bad, "Ready")
    assert invalid_ready["reason"] == "InvalidSpec"
    assert "spec.training.gpus" in invalid_ready["message"]
    assert job_posts(cluster) == 0


@pytest.mark.slow
def test_real_trainer_run_is_promoted(cluster: RunningCluster, bucket: str, tmp_path: Path) -> None:
    """The Job's command (`rewardops-trainer train`) runs for real on a tiny model."""
    from tests.support.tiny_models import make_tiny_bert  # torch: only for this test

    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    root = f"s3://{bucket}"
    generate_telemetry(open_store(f"{root}/telemetry"), events=300, seed=5, start=since, end=until)
    generate_golden(open_store(f"{root}/golden"), "golden.jsonl", pairs=30, seed=5)
    put_dir(open_store(f"{root}/models/base"), "", make_tiny_bert(tmp_path / "base"))
    served = f"{root}/models/base"
    cluster.create(DEPLOYMENTS, deployment(model=served))

    def can_load(uri: str) -> bool:
        return open_store(uri).exists("model.safetensors")

    spec = update(
        "real",
        bucket,
        telemetry={
            "uri": f"{root}/telemetry",
            "since": "2026-01-01T00:00:00Z",
            "until": "2026-01-02T00:00:00Z",
        },
        goldenSet={"uri": f"{root}/golden/golden.jsonl"},
    )
    spec["spec"]["training"].update(
        {
            "hyperparameters": {
                "learningRate": "1e-3",
                "batchSize": 16,
                "epochs": 1,
                "maxLength": 64,
                "seed": 3,
            },
            "pairs": {"minPairs": 30},
        }
    )
    harness = kubelet(cluster, run_command(tmp_path / "pods", timeout=240), can_load=can_load)
    with harness, operator():
        cluster.create(API, spec)
        done = wait_for(
            "a finished run",
            lambda: (cluster.get(f"{API}/real") or {}).get("status", {}).get("finishedAt"),
            timeout=300,
        )
        done = cluster.get(f"{API}/real")

    assert done["status"]["phase"] == "Succeeded", done["status"]["conditions"]
    run = done["status"]["runId"]
    assert model_env(cluster.get(f"{DEPLOYMENTS}/scorer")) == f"{root}/runs/{run}/model"
    assert done["status"]["data"]["pairsTrain"] > 0
    assert float(done["status"]["candidate"]["heldOutAccuracy"]) > float(
        done["status"]["baseline"]["heldOutAccuracy"]
    )


def test_operator_command_serves_liveness_and_metrics(
    cluster: RunningCluster, bucket: str, tmp_path: Path
) -> None:
    """`rewardops operator` as the chart runs it: a process with a liveness and a metrics port."""
    cluster.create(DEPLOYMENTS, deployment())
    liveness, metrics_port = free_port(), free_port()
    command = [
        sys.executable,
        "-c",
        "from rewardops_operator.cli import main; main()",
        "operator",
        f"--namespace={NS}",
        f"--liveness=http://127.0.0.1:{liveness}/healthz",
        f"--metrics-port={metrics_port}",
        "--log-format=json",
    ]
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("the liveness endpoint", lambda: http_ok(f"http://127.0.0.1:{liveness}/healthz"))
        cluster.create(API, update("cli", bucket))
        wait_for("the Job", lambda: cluster.items(JOBS))

        def exposition() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                return str(response.read().decode())

        wait_for("one active run", lambda: "rewardops_active_runs 1.0" in exposition())
    finally:
        process.terminate()
        code = process.wait(30)
    assert code == 0, log.read_text()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_operator_refuses_to_start_without_the_crd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import kube_config

    with running_cluster() as bare:
        kubeconfig = bare.write_kubeconfig(tmp_path / "kubeconfig", NS)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        bare.create("/api/v1/namespaces", {"metadata": {"name": NS}})
        args = ["run", "--standalone", "--namespace", NS, "-m", "rewardops_operator.handlers"]
        with KopfRunner(args, timeout=30, reraise=False) as runner:
            deadline = time.monotonic() + TIMEOUT
            while runner.exit_code is None and time.monotonic() < deadline:
                time.sleep(0.1)
        assert runner.exit_code not in (None, 0)
        assert "install the CRD" in runner.output
