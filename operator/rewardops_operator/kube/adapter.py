"""The only module that talks to the Kubernetes API (and reads what the trainer Jobs wrote).

Synchronous and small: the kopf handlers call it from worker threads. Objects travel as plain
dicts (the pure builders in this package make and read them), so no client model validation
stands between the operator and the API server. Every write names the field manager
``rewardops``. Creating what exists and deleting what is gone are success (409 / 404), which
keeps every action idempotent across operator restarts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlparse

from rewardops_operator.analysis.http import ProviderError
from rewardops_operator.analysis.measure import measure_all, offline_scores
from rewardops_operator.api.models import (
    GROUP,
    PLURAL,
    VERSION,
    RewardModelUpdate,
    RewardModelUpdateStatus,
    ServingMetricsCheckSpec,
)
from rewardops_operator.core.actions import (
    AcquireLock,
    Action,
    CreateFeedbackJob,
    CreateJob,
    DeleteJob,
    EmitEvent,
    ReleaseLock,
    SetServedModel,
)
from rewardops_operator.core.analysis import wanted
from rewardops_operator.core.observations import (
    AnalysisMeasurements,
    FeedbackState,
    JobState,
    Observations,
    ReportState,
    feedback_job_to_observe,
    feedback_to_read,
    report_to_read,
)
from rewardops_operator.core.run_config import storage_settings
from rewardops_operator.kube.deployment import (
    PROMOTION_LOCK_ANNOTATION,
    lock_patch,
    observe_deployment,
    observe_job,
    set_model_patch,
)
from rewardops_operator.kube.job import build_job, pod_termination
from rewardops_operator.reports import read_feedback, read_report
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.contract import Report, StorageSettings
from rewardops_trainer.storage import StorageError

FIELD_MANAGER = "rewardops"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
#: Finished reports are immutable (written last, never rewritten): keep the recent ones.
REPORT_CACHE_SIZE = 512
#: The label the Job controller puts on a Job's pods.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


class LockHeld(Exception):
    """Another update holds the Deployment's promotion lock (or won the race for it)."""


class KubeApi:
    """A thin JSON client over the kubernetes package's authenticated HTTP layer."""

    def __init__(self, api_client: Any) -> None:
        self._client = api_client

    @classmethod
    def from_environment(cls) -> KubeApi:
        """In-cluster credentials in a pod, else ``$KUBECONFIG`` (read now, not at import)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            path = os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config"))
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=configuration
            )
        # The operator calls from several worker threads at once.
        configuration.connection_pool_maxsize = 16
        return cls(client.ApiClient(configuration))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The response object; None for 404. Other failures raise :class:`ApiError`."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, payload, _ = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(method, url, header_params=headers, body=payload)
        response.read()
        text = response.data.decode() if response.data else ""
        if response.status == 404:
            return None
        if response.status >= 400:
            message = text
            with contextlib.suppress(ValueError):
                message = json.loads(text).get("message", text)
            raise ApiError(response.status, method, path, message)
        result: dict[str, Any] | None = json.loads(text) if text else None
        return result

    def serves_updates(self) -> bool:
        """Whether the API server serves RewardModelUpdates (the CRD is installed).

        Discovery needs no RBAC, so this works under any service account."""
        found = self.request("GET", f"/apis/{GROUP}/{VERSION}")
        resources = (found or {}).get("resources", [])
        return any(resource.get("name") == PLURAL for resource in resources)

    # --- objects ---------------------------------------------------------------------------

    def get_update(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", _update_path(namespace, name))

    def patch_update_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.request(
            "PATCH",
            _update_path(namespace, name) + "/status",
            {"status": status},
            content_type=MERGE_PATCH,
            query={"fieldManager": FIELD_MANAGER},
        )

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", _job_path(namespace, name))

    def create_job(self, namespace: str, job: dict[str, Any]) -> bool:
        """True when created now; False when it already existed (a retry or a restart)."""
        try:
            self.request("POST", _job_path(namespace), job, query={"fieldManager": FIELD_MANAGER})
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        # Background: the Job goes at once and the garbage collector removes its pods.
        self.request(
            "DELETE",
            _job_path(namespace, name),
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )

    def list_job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The Job's pods, oldest first."""
        listed = self.request(
            "GET",
            f"/api/v1/namespaces/{quote(namespace)}/pods",
            query={"labelSelector": f"{JOB_NAME_LABEL}={job}"},
        )
        pods = [
            pod
            for pod in (listed or {}).get("items", [])
            if (pod.get("metadata", {}).get("labels") or {}).get(JOB_NAME_LABEL) == job
        ]
        return sorted(pods, key=lambda pod: pod["metadata"].get("creationTimestamp") or "")

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", _deployment_path(namespace, name))

    def patch_deployment(self, namespace: str, name: str, patch: Any) -> dict[str, Any] | None:
        """A JSON patch (list) or a merge patch (dict) of the Deployment."""
        return self.request(
            "PATCH",
            _deployment_path(namespace, name),
            patch,
            content_type=JSON_PATCH if isinstance(patch, list) else MERGE_PATCH,
            query={"fieldManager": FIELD_MANAGER},
        )

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.request("GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}")
        if secret is None:
            raise LookupError(f"Secret {namespace}/{name} does not exist")
        data: dict[str, str] = secret.get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _update_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
    return f"{base}/{quote(name)}" if name else base


def _job_path(namespace: str, name: str = "") -> str:
    base = f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"
    return f"{base}/{quote(name)}" if name else base


def _deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments/{quote(name)}"


class Cluster:
    """What the kopf driver does to the world: observe an update's children, carry out actions.

    One per operator. Promotion-lock changes are serialised in-process as well as guarded by
    resourceVersion, so two updates of one operator never both win a lock.
    """

    def __init__(self, api: KubeApi, settings: OperatorSettings) -> None:
        self.api = api
        self.settings = settings
        self._lock_guard = threading.Lock()
        self._reports: OrderedDict[str, Report] = OrderedDict()
        self._reports_guard = threading.Lock()

    # --- observing -------------------------------------------------------------------------

    def observe(self, update: RewardModelUpdate, now: datetime) -> Observations:
        namespace = _namespace(update)
        status = update.status or RewardModelUpdateStatus()
        job = None
        if status.job_name:
            raw_job = self.api.get_job(namespace, status.job_name)
            job = self._job_state(namespace, raw_job) if raw_job is not None else None
        uri = report_to_read(update, job)
        report = self.read_report(update, uri) if uri else None
        serving = update.spec.serving
        raw_deployment = self.api.get_deployment(namespace, serving.deployment)
        deployment = (
            observe_deployment(raw_deployment, serving.container, serving.model_env)
            if raw_deployment is not None
            else None
        )
        analysis = None
        if raw_deployment is not None:
            analysis = self.measure_analysis(update, raw_deployment, now)
        feedback_job = None
        feedback_job_name = feedback_job_to_observe(update)
        if feedback_job_name is not None:
            raw_feedback_job = self.api.get_job(namespace, feedback_job_name)
            if raw_feedback_job is not None:
                feedback_job = self._job_state(namespace, raw_feedback_job)
        result_uri = feedback_to_read(update, feedback_job)
        return Observations(
            now=now,
            job=job,
            report=report,
            deployment=deployment,
            analysis=analysis,
            feedback_job=feedback_job,
            feedback=self.read_feedback(update, result_uri) if result_uri else None,
        )

    def measure_analysis(
        self, update: RewardModelUpdate, raw_deployment: dict[str, Any], now: datetime
    ) -> AnalysisMeasurements | None:
        """The live-analysis checks, when the core wants a measurement at ``now``."""
        spec = wanted(update, now)
        if spec is None:
            return None
        namespace = _namespace(update)

        def targets(check: ServingMetricsCheckSpec) -> list[str]:
            return [
                f"http://{address}:{check.port}{check.path}"
                for address in self.serving_pod_addresses(namespace, raw_deployment)
            ]

        def secret(name: str, key: str) -> str:
            data = self.api.read_secret(namespace, name)
            if key not in data:
                raise LookupError(f"Secret {name} has no key {key}")
            return data[key]

        return measure_all(spec, offline_scores(update.status), targets=targets, secret=secret)

    def serving_pod_addresses(self, namespace: str, raw_deployment: dict[str, Any]) -> list[str]:
        """IPs of the Deployment's running, ready pods (by its selector's matchLabels)."""
        selector = (raw_deployment.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        if not selector:
            raise ProviderError("the serving Deployment has no selector.matchLabels")
        query = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        try:
            listed = self.api.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/pods", query={"labelSelector": query}
            )
        except ApiError as error:
            raise ProviderError(f"listing the serving pods: {error}") from None
        addresses = []
        for pod in (listed or {}).get("items", []):
            meta, status = pod.get("metadata", {}), pod.get("status", {})
            labels = meta.get("labels") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            # Filtered here too: not every API server honours labelSelector (test stand-ins).
            if (
                all(labels.get(key) == value for key, value in selector.items())
                and not meta.get("deletionTimestamp")
                and status.get("phase") == "Running"
                and ready
                and status.get("podIP")
            ):
                addresses.append(str(status["podIP"]))
        return sorted(addresses)

    def _job_state(self, namespace: str, raw_job: dict[str, Any]) -> JobState:
        """The Job; when it failed, with the trainer's termination message and exit code."""
        job = observe_job(raw_job)
        if not job.failed:
            return job
        message, exit_code = "", None
        for pod in reversed(self.api.list_job_pods(namespace, job.name)):
            message, exit_code = pod_termination(pod)
            if message or exit_code is not None:
                break
        parts = [part for part in (job.message, message) if part]
        return replace(job, message="; ".join(parts), exit_code=exit_code)

    def read_report(self, update: RewardModelUpdate, uri: str) -> ReportState:
        """report.json at ``uri`` with the update's storage settings and Secret credentials."""
        with self._reports_guard:
            cached = self._reports.get(uri)
        if cached is not None:
            return ReportState(report=cached)
        try:
            credentials = self._credentials_for(update, uri)
        except (StorageError, LookupError, ValueError, OSError) as error:
            return ReportState(error=f"{uri}: {error}")
        state = read_report(uri, self._storage(update), credentials=credentials)
        if state.report is not None:
            with self._reports_guard:
                self._reports[uri] = state.report
                while len(self._reports) > REPORT_CACHE_SIZE:
                    self._reports.popitem(last=False)
        return state

    def read_feedback(self, update: RewardModelUpdate, uri: str) -> FeedbackState:
        """A fresh-feedback evaluation's result, read like the report."""
        try:
            credentials = self._credentials_for(update, uri)
        except (StorageError, LookupError, ValueError, OSError) as error:
            return FeedbackState(error=f"{uri}: {error}")
        return read_feedback(uri, self._storage(update), credentials=credentials)

    def _storage(self, update: RewardModelUpdate) -> StorageSettings:
        return storage_settings(update, self.settings)

    def _credentials_for(
        self, update: RewardModelUpdate, uri: str
    ) -> tuple[str | None, str | None] | None:
        """Credentials to read ``uri``: none for a file, the Secret's (or ours) for S3."""
        if urlparse(uri).scheme != "s3":
            return None
        if not self._storage(update).endpoint:
            raise ValueError("no S3 endpoint: set spec.storage.endpoint or the operator default")
        return self._credentials(update)

    def _credentials(self, update: RewardModelUpdate) -> tuple[str | None, str | None]:
        """From the referenced Secret; without one, the operator's own environment."""
        ref = update.spec.storage.credentials
        name = ref.secret_name if ref else self.settings.storage_secret
        if name is None:
            return os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        access_field = ref.access_key_id_key if ref else "AWS_ACCESS_KEY_ID"
        secret_field = ref.secret_access_key_key if ref else "AWS_SECRET_ACCESS_KEY"
        data = self.api.read_secret(_namespace(update), name)
        missing = [key for key in (access_field, secret_field) if key not in data]
        if missing:
            raise LookupError(f"Secret {name} has no key {', '.join(missing)}")
        return data[access_field], data[secret_field]

    # --- acting ----------------------------------------------------------------------------

    def apply(self, update: RewardModelUpdate, action: Action) -> None:
        """Carry out one action (events are the kopf layer's). Raises LockHeld on a lost lock."""
        namespace = _namespace(update)
        match action:
            case CreateJob() | CreateFeedbackJob():
                self.api.create_job(namespace, build_job(update, action, self.settings))
            case DeleteJob(name=name):
                self.api.delete_job(namespace, name)
            case AcquireLock(deployment=deployment, holder=holder):
                self._set_lock(namespace, deployment, holder, acquire=True)
            case ReleaseLock(deployment=deployment, holder=holder):
                self._set_lock(namespace, deployment, holder, acquire=False)
            case SetServedModel(deployment=deployment):
                current = self.api.get_deployment(namespace, deployment)
                if current is None:
                    raise LookupError(f"Deployment {namespace}/{deployment} does not exist")
                patch = set_model_patch(current, action)
                if patch:
                    self.api.patch_deployment(namespace, deployment, patch)
            case EmitEvent():
                pass

    def _set_lock(self, namespace: str, deployment: str, holder: str, *, acquire: bool) -> None:
        with self._lock_guard:
            current = self.api.get_deployment(namespace, deployment)
            if current is None:
                if acquire:
                    raise LookupError(f"Deployment {namespace}/{deployment} does not exist")
                return  # nothing left to unlock
            meta = current.get("metadata", {})
            held_by = (meta.get("annotations") or {}).get(PROMOTION_LOCK_ANNOTATION)
            if acquire and held_by == holder:
                return
            if acquire and held_by is not None:
                raise LockHeld(f"Deployment {deployment} is locked by {held_by}")
            if not acquire and held_by != holder:
                return  # never take another holder's lock away
            patch = lock_patch(holder if acquire else None)
            # A real API server refuses the write if anyone changed the Deployment since the read.
            patch.setdefault("metadata", {})["resourceVersion"] = meta.get("resourceVersion")
            try:
                self.api.patch_deployment(namespace, deployment, patch)
            except ApiError as error:
                if error.status == 409:
                    raise LockHeld(f"Deployment {deployment} changed while locking") from None
                raise

    def write_status(self, update: RewardModelUpdate, status: RewardModelUpdateStatus) -> None:
        # Every field is sent, None included: in a merge patch null removes what was there.
        body = status.model_dump(mode="json", by_alias=True)
        self.api.patch_update_status(_namespace(update), update.metadata.name, body)


def _namespace(update: RewardModelUpdate) -> str:
    return update.metadata.namespace or "default"
