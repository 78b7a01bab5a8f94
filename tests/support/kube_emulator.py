"""The stand-in Kubernetes API server for integration tests: kmock's emulator, made closer to
a real API server, run on a loopback port in a background thread.

What the subclass adds to ``kmock.KubernetesEmulator`` (see ../shared/TESTING.md):

- ``metadata.uid``, ``resourceVersion`` (bumped on every write), ``creationTimestamp`` and
  ``generation`` (bumped when anything outside ``metadata``/``status`` changes);
- the status subresource: a patch of ``.../status`` changes only ``status``, a patch of the
  object leaves ``status`` alone (for resources that declare the subresource);
- optimistic concurrency: a merge patch carrying ``metadata.resourceVersion`` that is not the
  current one answers 409 Conflict, as a real API server does;
- a created CustomResourceDefinition becomes a served resource (discovery, list, watch);
- ``metadata.generateName`` is honoured (kopf names its Events that way);
- a JSON patch whose ``test`` fails answers 422, as a real API server does (kopf re-reads);
- it forgets requests once served (kmock matches each request against all earlier ones);
- ``/api/v1/namespaces[/NAME]`` parse as the cluster-scoped namespaces resource (kmock 0.8
  reads the word "namespaces" as a namespace prefix and fails on these paths).

Nothing here is known to the operator: it reaches the server through a generated kubeconfig.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import gzip
import importlib.resources
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import dicts, parsing, rendering
from kmock._internal.k8s import KubernetesError

T = TypeVar("T")

_original_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and len(parts) in (3, 4) and parts[2] == "namespaces":
        name = parts[3] if len(parts) == 4 else None
        return parsing.ParsedPath("", "v1", "namespaces", None, name, None)
    if parts[:2] == ["api", "v1"] and len(parts) == 5 and parts[2:5:2] == ["namespaces", "status"]:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3], "status")
    return _original_parse_path(path)


parsing.parse_path = _parse_path


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_VERBS = {
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.FETCH: "get",
    kmock.action.CREATE: "create",
    kmock.action.UPDATE: "patch",
    kmock.action.DELETE: "delete",
}


def _call(request: rendering.Request) -> tuple[str, str, str, str]:
    assert request.resource is not None
    verb = _VERBS.get(request.action, str(request.method).lower()) if request.action else ""
    if request.method == "PUT":
        verb = "update"
    resource = str(request.resource.plural)
    if request.subresource:
        resource += f"/{request.subresource}"
    agent = request.headers.get("User-Agent", "")
    return agent, verb, str(request.resource.group), resource


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _in_flight: set[int] = attrs.field(factory=set, init=False)
    #: Every resource request as (User-Agent, RBAC verb, API group, resource[/subresource]).
    calls: list[tuple[str, str, str, str]] = attrs.field(factory=list, init=False)
    #: Every create request (also those answered 409): "plural namespace/name".
    creates: list[str] = attrs.field(factory=list, init=False)
    #: When each create request arrived (time.monotonic()), in the order of ``creates``.
    create_times: list[float] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # load_bundled() uses a deprecated importlib call (an error under -W error).
        bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
        self.resources.load_data(gzip.decompress(bundled.read_bytes()))

    def _has_status(self, resource: kmock.resource) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources

    async def _handle(self, request: rendering.Request) -> Any:
        # kmock keeps every request and matches each new one against all earlier ones, which
        # grows quadratically; keep only the requests still being served.
        self._in_flight.add(id(request))
        self._requests[:] = [r for r in self._requests if id(r) in self._in_flight]
        try:
            return await self._serve(request)
        finally:
            self._in_flight.discard(id(request))

    async def _serve(self, request: rendering.Request) -> Any:
        if request.resource is not None and request.resource.plural:
            self.calls.append(_call(request))
        if request.resource is not None:
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                self._on_create(request)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                async with self._lock:
                    self._on_update(request)
        return await super()._handle(request)

    def _on_create(self, request: rendering.Request) -> None:
        assert request.resource is not None
        meta = request.data.setdefault("metadata", {})
        if "name" not in meta and "generateName" in meta:
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if request.namespace and "namespace" not in meta:
            meta["namespace"] = request.namespace
        self.creates.append(f"{request.resource.plural} {meta.get('namespace')}/{meta.get('name')}")
        self.create_times.append(time.monotonic())
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = str(next(self._versions))
        meta.setdefault("generation", 1)
        if self._has_status(request.resource):
            request.data.pop("status", None)
        if request.resource == kmock.resource(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions"
        ):
            self._serve_crd(request.data)

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            key = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[key] = kmock.ResourceInfo(
                namespaced=spec["scope"] == "Namespaced",
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                shortnames=names.get("shortNames", []),
                verbs=["create", "delete", "get", "list", "patch", "update", "watch"],
                subresources=list(version.get("subresources", {})),
            )

    def _on_update(self, request: rendering.Request) -> None:
        assert request.resource is not None
        assert request.name is not None
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return  # the base class answers 404
        current = copy.deepcopy(self.objects[key].raw)
        data = request.data
        status_only = request.subresource == "status"
        if isinstance(data, dict):
            wanted = data.get("metadata", {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"].get("resourceVersion"):
                raise KubernetesError(
                    status=409, reason="Conflict", message="the object has been modified"
                )
            # Mutating the parsed body in place is how this subclass shapes what the base
            # class then merges.
            if status_only:
                for field in [k for k in data if k not in ("status", "metadata")]:
                    del data[field]
                data.pop("metadata", None)
            elif self._has_status(request.resource):
                data.pop("status", None)
        try:
            updated = dicts.patch_dict(current, data)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
            # A real API server answers a failed JSON-patch "test" (or a bad path) with 422.
            raise KubernetesError(status=422, reason="Invalid", message=str(error)) from None
        changed_spec = any(
            updated.get(k) != current.get(k)
            for k in set(updated) | set(current)
            if k not in ("metadata", "status", "apiVersion", "kind")
        )
        version = str(next(self._versions))
        generation = current["metadata"].get("generation", 1) + (1 if changed_spec else 0)
        if isinstance(data, dict):
            data.setdefault("metadata", {})
            data["metadata"]["resourceVersion"] = version
            data["metadata"]["generation"] = generation
        else:
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
            data.append({"op": "add", "path": "/metadata/generation", "value": generation})


class RunningCluster:
    """The emulator on ``http://127.0.0.1:PORT`` in its own thread and event loop."""

    def __init__(self) -> None:
        self.emulator = ClusterEmulator()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = f"http://127.0.0.1:{server.port}"
            self._started.set()
            await self._stopping.wait()

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the Kubernetes emulator did not start")

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the emulator's loop, so it never sees objects mid-change."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "tester", "namespace": namespace},
                }
            ],
            "current-context": "emulator",
        }
        path.write_text(json.dumps(config))
        return path

    # --- a small synchronous client for the tests and the harness ----------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        kind = "json-patch" if isinstance(body, list) else "merge-patch"
        return self.request("PATCH", path, body, f"application/{kind}+json")

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def items(self, path: str) -> list[dict[str, Any]]:
        listed = self.get(path)
        return [] if listed is None else list(listed["items"])


@contextmanager
def running_cluster() -> Iterator[RunningCluster]:
    cluster = RunningCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
