"""`rewardops-trainer serve` as the operator and the local driver run it: a subprocess."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_models import make_tiny_bert

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "rewardops-trainer")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")


class Server:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()
        self.url = self._wait_for("listening on ").split("listening on ", 1)[1].strip()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def _wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.log.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} from the server: {''.join(self.log)}")

    def request(self, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        try:
            with urllib.request.urlopen(self.url + path, data=data, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.request("/readyz")
            if status == 200:
                return
            assert body["status"] == "loading", body
            time.sleep(0.1)
        raise AssertionError("never ready")


@pytest.fixture
def start(tiny_model: Path) -> Iterator[Any]:
    started: list[Server] = []

    def run(*args: str) -> Server:
        env = {**os.environ, "REWARD_MODEL_URI": str(tiny_model)}
        process = subprocess.Popen(
            [CLI, "serve", "--host", "127.0.0.1", "--port", "0", *args],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        server = Server(process)
        started.append(server)
        return server

    yield run
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait()
        server.pump.join(timeout=10)
        assert server.process.stderr is not None
        server.process.stderr.close()


def test_bad_requests_then_sigterm_with_a_request_in_flight(start: Any) -> None:
    # A long batching wait keeps one request in flight while the signal arrives.
    server = start(
        "--max-wait-ms",
        "1500",
        "--max-chars",
        "50",
        "--max-responses",
        "2",
        "--max-body-bytes",
        "4096",
    )
    server.wait_ready()
    for path, body, field in (
        ("/v1/score", {"prompt": "p" * 51, "response": "r"}, "prompt"),
        ("/v1/scores", {"prompt": "p", "responses": ["a", "b", "c"]}, "responses"),
        ("/v1/scores", {"prompt": "p", "responses": ["a"] * 2000}, "body"),
    ):
        status, answer = server.request(path, body)
        assert 400 <= status < 500
        assert answer["field"] == field
    status, answer = server.request("/v1/compare", {"prompt": "p", "first": "a", "second": "b"})
    assert status == 200
    assert 0.0 < answer["probabilityFirstPreferred"] < 1.0

    outcome: dict[str, Any] = {}

    def in_flight() -> None:
        outcome["result"] = server.request("/v1/score", {"prompt": "p", "response": "r"})

    client = threading.Thread(target=in_flight)
    client.start()
    time.sleep(0.4)
    server.process.send_signal(signal.SIGTERM)
    server._wait_for("signal received")
    time.sleep(0.2)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/healthz", timeout=5)
    client.join(timeout=30)
    assert server.process.wait(timeout=30) == 0
    status, body = outcome["result"]
    assert status == 200
    assert isinstance(body["score"], float)


def test_a_missing_model_keeps_the_process_alive_and_unready(start: Any, tmp_path: Path) -> None:
    server = start("--model", str(tmp_path / "nowhere"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = server.request("/readyz")
        if body["status"] != "loading":
            break
        time.sleep(0.1)
    assert status == 503
    assert "no such directory" in body["reason"]
    assert server.request("/healthz")[0] == 200
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
