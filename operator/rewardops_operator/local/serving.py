"""The serving Deployment as local reference-scorer processes behind one port.

A rollout starts the new model beside the old one and switches the port to it only when its
/readyz says ready; until then, and after a failed rollout, the old model keeps serving. A new
scorer that reports it cannot load its model (or exits) counts as a stalled rollout at once
(the cluster would wait for progressDeadlineSeconds); the core then rolls back the same way.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rewardops_operator.core.actions import SetServedModel
from rewardops_operator.core.observations import DeploymentState
from rewardops_operator.local.proxy import SwitchingProxy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Scorer:
    model_uri: str
    port: int
    process: subprocess.Popen[bytes]

    def readiness(self) -> str:
        """ready, starting or failed."""
        if self.process.poll() is not None:
            return "failed"
        url = f"http://127.0.0.1:{self.port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return "ready" if response.status == 200 else "starting"
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
            return "failed" if body.get("status") == "failed" else "starting"
        except OSError:
            return "starting"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalDeployment:
    """One serving 'Deployment': its model env var, generation, rollout state and lock."""

    def __init__(
        self,
        name: str,
        *,
        serve_port: int,
        log_dir: Path,
        env: dict[str, str],
        model_uri: str | None,
        container: str = "scorer",
        model_env: str = "REWARD_MODEL_URI",
    ) -> None:
        self.name = name
        self.container = container
        self.model_env = model_env
        self.serve_port = serve_port
        self.log_dir = log_dir
        self.env = env
        self.model_uri = model_uri
        self.model_version: str | None = None
        self.previous_model_uri: str | None = None
        self.generation = 1
        self.lock_holder: str | None = None
        self._active: _Scorer | None = None
        self._rolling: _Scorer | None = None
        self._stalled = False
        self._proxy = SwitchingProxy(serve_port)

    def start(self, ready_timeout: float = 300.0) -> None:
        """Listen on the serving port and bring up the current model, if any."""
        self._proxy.start()
        if self.model_uri is None:
            return
        scorer = self._launch(self.model_uri)
        deadline = time.monotonic() + ready_timeout
        while (state := scorer.readiness()) == "starting" and time.monotonic() < deadline:
            time.sleep(0.2)
        if state != "ready":
            scorer.stop()
            raise RuntimeError(f"the served model {self.model_uri} does not become ready")
        self._activate(scorer)

    def _launch(self, model_uri: str) -> _Scorer:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = (self.log_dir / f"serve-{self.name}-{port}.log").open("ab")
        command = [sys.executable, "-m", "rewardops_trainer", "serve"]
        command += ["--model", model_uri, "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(
            command,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        return _Scorer(model_uri, port, process)

    def _activate(self, scorer: _Scorer) -> None:
        old, self._active = self._active, scorer
        self._proxy.switch(scorer.port)
        if old is not None:
            old.stop()

    def set_model(self, action: SetServedModel) -> None:
        if self.model_uri == action.model_uri:
            return  # already set: a repeated action changes nothing
        self.previous_model_uri = action.previous_model_uri
        self.model_uri = action.model_uri
        self.model_version = action.model_version
        self.generation += 1
        self._stalled = False
        if self._rolling is not None:
            self._rolling.stop()
            self._rolling = None
        if self._active is not None and self._active.model_uri == action.model_uri:
            return  # rolling back to the model still serving: nothing to start
        self._rolling = self._launch(action.model_uri)

    def observe(self) -> DeploymentState:
        if self._rolling is not None:
            state = self._rolling.readiness()
            if state == "ready":
                self._activate(self._rolling)
                self._rolling = None
            elif state == "failed":
                self._stalled = True
        done = self._rolling is None and self._active is not None
        return DeploymentState(
            name=self.name,
            generation=self.generation,
            observed_generation=self.generation,
            desired_replicas=1,
            updated_replicas=1 if done else 0,
            available_replicas=1 if self._active is not None else 0,
            progress_deadline_exceeded=self._stalled,
            containers=(self.container,),
            model_uri=self.model_uri,
            lock_holder=self.lock_holder,
        )

    @property
    def serving_model_uri(self) -> str | None:
        """The model that answers on the serving port right now."""
        return self._active.model_uri if self._active else None

    def stop(self) -> None:
        for scorer in (self._rolling, self._active):
            if scorer is not None:
                scorer.stop()
        self._proxy.stop()
