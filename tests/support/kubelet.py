"""Plays kubelet and the Job and Deployment controllers against the stand-in API server.

Nothing in the emulator runs pods. This harness watches (by polling) the Jobs the operator
creates and the Deployments in the test namespace:

- a new Job is handed to a *player* in a worker thread: ``run_command`` runs the Job's
  container command as a local process with the Job's env (secretKeyRef resolved from the
  Secret, as kubelet does), the other players stand in for a trainer (write a report, fail,
  hang until released); the harness then writes the Job's status like the Job controller:
  ``active``, then ``succeeded`` with a Complete condition or ``failed`` with a Failed one;
- a Deployment whose generation moved past its observedGeneration is rolled out: available
  when ``can_load(model_uri)`` says the serving container could load its model, otherwise
  stalled with ``Progressing=False, reason=ProgressDeadlineExceeded``.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rewardops_trainer.contract import (
    FEEDBACK_CONFIG_ENV,
    RUN_CONFIG_ENV,
    FeedbackConfig,
    FeedbackEvaluation,
    RunConfig,
)
from rewardops_trainer.contract.report import MODEL_DIR, REPORT_FILE
from rewardops_trainer.storage import open_store
from tests.support.kube_emulator import RunningCluster
from tests.support.reports import make_report, metrics

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    message: str = ""
    exit_code: int = 0


@dataclass
class PlayedJob:
    """What a player gets: the Job, its container env resolved, and a way to see deletion."""

    job: dict[str, Any]
    env: dict[str, str]
    deleted: threading.Event

    @property
    def name(self) -> str:
        return str(self.job["metadata"]["name"])

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.job["spec"]["template"]["spec"]["containers"][0])

    def run_config(self) -> RunConfig:
        return RunConfig.model_validate_json(self.env[RUN_CONFIG_ENV])

    def feedback_config(self) -> FeedbackConfig:
        return FeedbackConfig.model_validate_json(self.env[FEEDBACK_CONFIG_ENV])

    @property
    def trainer_command(self) -> str:
        """The ``rewardops-trainer`` subcommand the Job runs (train, feedback)."""
        return str(self.container["command"][-1])


Player = Callable[[PlayedJob], Outcome | None]


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Kubelet:
    cluster: RunningCluster
    namespace: str
    player: Player
    can_load: Callable[[str], bool] = lambda uri: True
    model_env: str = "REWARD_MODEL_URI"
    #: Every Job name this harness started, in order (a second start would show here).
    started: list[str] = field(default_factory=list)
    #: While set, Deployment rollouts wait (a slow rollout).
    paused: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _deleted: dict[str, threading.Event] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)
    _errors: list[BaseException] = field(default_factory=list)

    def __enter__(self) -> Kubelet:
        thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for event in self._deleted.values():
            event.set()
        for thread in self._threads:
            thread.join(30)
        if self._errors and exc[0] is None:
            raise self._errors[0]

    # --- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync_jobs()
                self._sync_deployments()
            except Exception as error:
                self._errors.append(error)
                return
            time.sleep(POLL_SECONDS)

    def _jobs_path(self) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/jobs"

    def _sync_jobs(self) -> None:
        live = {job["metadata"]["name"]: job for job in self.cluster.items(self._jobs_path())}
        for name, event in self._deleted.items():
            if name not in live:
                event.set()
        for name, job in live.items():
            if name in self._deleted:
                continue
            self._deleted[name] = threading.Event()
            self.started.append(name)
            played = PlayedJob(job, self._resolve_env(job), self._deleted[name])
            thread = threading.Thread(target=self._play, args=(played,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _resolve_env(self, job: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        container = job["spec"]["template"]["spec"]["containers"][0]
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "secretKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["secretKeyRef"]
                secret = self.cluster.get(
                    f"/api/v1/namespaces/{self.namespace}/secrets/{ref['name']}"
                )
                env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        return env

    def _start_pod(self, played: PlayedJob) -> str:
        """The Job controller's pod, Running, as kubelet reports it."""
        job = played.job
        name = f"{played.name}-{job['metadata']['uid'][:5]}"
        labels = {"batch.kubernetes.io/job-name": played.name, "job-name": played.name}
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": played.name,
            "uid": job["metadata"]["uid"],
            "controller": True,
        }
        pods = f"/api/v1/namespaces/{self.namespace}/pods"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
            "spec": job["spec"]["template"]["spec"],
        }
        self.cluster.create(pods, pod)
        container = played.container["name"]
        running = {"name": container, "state": {"running": {"startedAt": _now()}}}
        self.cluster.patch(
            f"{pods}/{name}/status",
            {"status": {"phase": "Running", "containerStatuses": [running]}},
        )
        return f"{pods}/{name}/status"

    def _finish_pod(self, path: str, container: str, outcome: Outcome) -> None:
        terminated = {
            "exitCode": outcome.exit_code,
            "reason": "Completed" if outcome.succeeded else "Error",
            "message": outcome.message,
            "finishedAt": _now(),
        }
        status = {
            "phase": "Succeeded" if outcome.succeeded else "Failed",
            "containerStatuses": [{"name": container, "state": {"terminated": terminated}}],
        }
        self.cluster.patch(path, {"status": status})

    def _play(self, played: PlayedJob) -> None:
        path = f"{self._jobs_path()}/{played.name}/status"
        try:
            pod = self._start_pod(played)
            self.cluster.patch(path, {"status": {"active": 1, "startTime": _now()}})
            outcome = self.player(played)
            if outcome is None or played.deleted.is_set():
                return
            self._finish_pod(pod, played.container["name"], outcome)
            if outcome.succeeded:
                status: dict[str, Any] = {
                    "active": 0,
                    "succeeded": 1,
                    "completionTime": _now(),
                    "conditions": [
                        {
                            "type": "SuccessCriteriaMet",
                            "status": "True",
                            "reason": "CompletionsReached",
                        },
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached"},
                    ],
                }
            else:
                # As the Job controller words it; the trainer's own message is in the pod.
                if outcome.exit_code == 3:
                    reason = "PodFailurePolicy"
                    text = (
                        f"Container {played.container['name']} for pod {self.namespace}/"
                        f"{played.name} failed with exit code 3 matching FailJob rule at index 0"
                    )
                else:
                    reason, text = (
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                    )
                condition = {"type": "Failed", "status": "True", "reason": reason, "message": text}
                status = {
                    "active": 0,
                    "failed": 1,
                    "conditions": [{**condition, "type": "FailureTarget"}, condition],
                }
            self.cluster.patch(path, {"status": status})
        except Exception as error:
            self._errors.append(error)

    def _sync_deployments(self) -> None:
        if self.paused.is_set():
            return
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
        for deployment in self.cluster.items(path):
            meta, status = deployment["metadata"], deployment.get("status") or {}
            generation = meta.get("generation", 1)
            if status.get("observedGeneration") == generation:
                continue
            replicas = deployment["spec"].get("replicas", 1)
            model = _env_value(deployment, self.model_env)
            if model is None or self.can_load(model):
                rolled: dict[str, Any] = {
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "conditions": [
                        {
                            "type": "Available",
                            "status": "True",
                            "reason": "MinimumReplicasAvailable",
                        },
                        {
                            "type": "Progressing",
                            "status": "True",
                            "reason": "NewReplicaSetAvailable",
                        },
                    ],
                }
            else:
                # The new pods never get ready; the old ones keep serving.
                rolled = {
                    "observedGeneration": generation,
                    "replicas": replicas + 1,
                    "updatedReplicas": 1,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "unavailableReplicas": 1,
                    "conditions": [
                        {
                            "type": "Available",
                            "status": "True",
                            "reason": "MinimumReplicasAvailable",
                        },
                        {
                            "type": "Progressing",
                            "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                            "message": f"ReplicaSet of {meta['name']} has timed out progressing.",
                        },
                    ],
                }
            self.cluster.patch(f"{path}/{meta['name']}/status", {"status": rolled})


def _env_value(deployment: dict[str, Any], env: str) -> str | None:
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for item in container.get("env", []):
            if item.get("name") == env:
                return str(item["value"]) if "value" in item else None
    return None


# --- players -------------------------------------------------------------------------------


def hold_until(release: threading.Event, then: Player) -> Player:
    """Keep the Job running until ``release`` is set (or the Job is deleted), then ``then``."""

    def play(played: PlayedJob) -> Outcome | None:
        while not release.wait(POLL_SECONDS):
            if played.deleted.is_set():
                return None
        return then(played)

    return play


def fail_with(message: str, exit_code: int = 3) -> Player:
    def play(played: PlayedJob) -> Outcome:
        return Outcome(False, message, exit_code)

    return play


def run_command(work_dir: Path, timeout: float = 300) -> Player:
    """Run the Job's container command locally with the Job's env, as kubelet would."""

    def play(played: PlayedJob) -> Outcome | None:
        container = played.container
        command = [*container.get("command", []), *container.get("args", [])]
        scratch = work_dir / played.name
        scratch.mkdir(parents=True, exist_ok=True)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "S3_", "REWARDOPS_"))
        }
        env.update(played.env)
        # The Job's emptyDir scratch is a local folder; the image's PATH is this venv's bin.
        env.update({"HOME": str(scratch), "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1"})
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        process = subprocess.Popen(
            command,
            env=env,
            cwd=scratch,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if played.deleted.is_set() or time.monotonic() > deadline:
                process.kill()
                process.wait()
                return None
            time.sleep(POLL_SECONDS)
        _, stderr = process.communicate()
        (scratch / "stderr.log").write_text(stderr)
        if process.returncode == 0:
            return Outcome(True)
        # terminationMessagePolicy FallbackToLogsOnError: the last lines of the log.
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        message = lines[-1] if lines else f"exit code {process.returncode}"
        return Outcome(False, message, process.returncode)

    return play


def write_report(candidate: float, baseline: float | None = 0.7) -> Player:
    """Stand in for the trainer: write the model marker and report.json (last), succeed."""

    def play(played: PlayedJob) -> Outcome:
        config = played.run_config()
        store = open_store(config.run_uri, config.storage)
        store.write_bytes(f"{MODEL_DIR}/config.json", b"{}")
        report = make_report(
            metrics(candidate), None if baseline is None else metrics(baseline), config=config
        )
        store.write_bytes(REPORT_FILE, report.to_json().encode())
        return Outcome(True)

    return play


def by_command(**players: Player) -> Player:
    """A player per trainer subcommand: ``by_command(train=..., feedback=...)``."""

    def play(played: PlayedJob) -> Outcome | None:
        return players[played.trainer_command](played)

    return play


def write_feedback(promoted: float, previous: float, pairs: int = 400) -> Player:
    """Stand in for a fresh-feedback evaluation: write its result with these accuracies."""

    def play(played: PlayedJob) -> Outcome:
        config = played.feedback_config()
        directory, name = config.result_uri.rsplit("/", 1)
        result = FeedbackEvaluation(
            evaluation_id=config.evaluation_id,
            created_at=datetime.now(UTC),
            since=config.since,
            until=config.until,
            events_read=pairs * 3,
            events_rejected=0,
            events_without_consent=0,
            pairs_found=pairs,
            min_pairs=config.min_pairs,
            enough=pairs >= config.min_pairs,
            promoted=metrics(promoted) if pairs >= config.min_pairs else None,
            previous=metrics(previous) if pairs >= config.min_pairs else None,
            input_digest="0" * 64,
        )
        open_store(directory, config.storage).write_bytes(name, result.to_json().encode())
        return Outcome(True)

    return play
