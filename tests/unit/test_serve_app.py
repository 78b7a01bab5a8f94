"""The HTTP app against a fake model: no torch, so these run in well under a second each."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from rewardops_trainer.errors import ConfigError
from rewardops_trainer.serve.app import ServeOptions, create_app, serving, sigmoid
from rewardops_trainer.serve.limits import Limits
from rewardops_trainer.serve.loader import LoadedModel
from rewardops_trainer.storage import StorageError

OPTIONS = ServeOptions(
    max_batch=8,
    max_wait_s=0.001,
    limits=Limits(max_body_bytes=2000, max_responses=4, max_chars=100),
    load_retry_delays_s=(0.01, 0.01),
)


def length_scorer(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    return [len(r) / 10 - len(p) / 100 for p, r in zip(prompts, responses, strict=True)]


def fake_model(
    scorer: Callable[[Sequence[str], Sequence[str]], Sequence[float]] = length_scorer,
) -> LoadedModel:
    return LoadedModel(
        uri="file:///m", digest="ab" * 32, version="run-7", device="cpu", scorer=scorer
    )


@asynccontextmanager
async def running(
    load: Callable[[], LoadedModel], options: ServeOptions = OPTIONS
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with (
        serving(create_app(load, options), "127.0.0.1", 0) as url,
        aiohttp.ClientSession() as http,
    ):
        yield http, url


async def wait_ready(http: aiohttp.ClientSession, url: str, want: int = 200) -> dict[str, Any]:
    for _ in range(200):
        async with http.get(f"{url}/readyz") as response:
            body: dict[str, Any] = await response.json()
            if response.status == want and body["status"] != "loading":
                return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"/readyz never answered {want}: {body}")


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(url, data=data) as response:
        return response.status, await response.json()


async def test_alive_at_once_and_ready_only_after_loading() -> None:
    release = threading.Event()

    def slow_load() -> LoadedModel:
        release.wait(5)
        return fake_model()

    async with running(slow_load) as (http, url):
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "loading"
        status, body = await post(http, f"{url}/v1/score", {"prompt": "p", "response": "r"})
        assert status == 503
        assert "not ready" in body["error"]
        release.set()
        ready = await wait_ready(http, url)
        assert ready["modelVersion"] == "run-7"


async def test_the_three_endpoints_score_through_the_model() -> None:
    async with running(fake_model) as (http, url):
        await wait_ready(http, url)
        status, one = await post(http, f"{url}/v1/score", {"prompt": "pp", "response": "abc"})
        assert status == 200
        assert one == {"score": pytest.approx(0.3 - 0.02), "modelVersion": "run-7"}
        status, many = await post(
            http, f"{url}/v1/scores", {"prompt": "", "responses": ["a", "abcd", "ab"]}
        )
        assert status == 200
        assert many["scores"] == pytest.approx([0.1, 0.4, 0.2])
        status, compared = await post(
            http, f"{url}/v1/compare", {"prompt": "", "first": "abcdef", "second": "a"}
        )
        assert status == 200
        assert compared["firstScore"] == pytest.approx(0.6)
        assert compared["secondScore"] == pytest.approx(0.1)
        assert compared["probabilityFirstPreferred"] == pytest.approx(1 / (1 + math.exp(-0.5)))
        async with http.get(f"{url}/v1/info") as response:
            info = await response.json()
        assert info["modelDigest"] == "ab" * 32
        assert info["modelUri"] == "file:///m"
        assert info["limits"]["maxResponses"] == 4


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/score", b"{not json", 400, "body"),
        ("/v1/score", b"[]", 400, "body"),
        ("/v1/score", {"prompt": "p"}, 422, "response"),
        ("/v1/score", {"prompt": "p", "response": 5}, 422, "response"),
        ("/v1/score", {"prompt": "p", "response": "r", "extra": 1}, 422, "extra"),
        ("/v1/score", {"prompt": "p" * 101, "response": "r"}, 413, "prompt"),
        ("/v1/scores", {"prompt": "p", "responses": ["r"] * 5}, 413, "responses"),
        ("/v1/scores", {"prompt": "p", "responses": ["r", None]}, 422, "responses[1]"),
        ("/v1/compare", {"prompt": "p", "first": "a"}, 422, "second"),
        ("/v1/score", {"prompt": "p", "response": "r" * 3000}, 413, "body"),
    ],
)
async def test_bad_requests_get_4xx_naming_the_field_and_serving_goes_on(
    path: str, body: Any, status: int, field: str
) -> None:
    async with running(fake_model) as (http, url):
        await wait_ready(http, url)
        got_status, got = await post(http, url + path, body)
        assert (got_status, got["field"]) == (status, field), got
        assert got["error"]
        good_status, good = await post(http, f"{url}/v1/score", {"prompt": "", "response": "ab"})
        assert good_status == 200
        assert good["score"] == pytest.approx(0.2)


async def test_unknown_paths_and_methods_answer_json() -> None:
    async with running(fake_model) as (http, url):
        async with http.get(f"{url}/nope") as response:
            assert response.status == 404
            assert "error" in await response.json()
        async with http.get(f"{url}/v1/score") as response:
            assert response.status == 405


async def test_a_model_that_cannot_load_stays_unready_with_the_reason() -> None:
    def broken() -> LoadedModel:
        raise ConfigError("model file:///m: no model.safetensors")

    async with running(broken) as (http, url):
        body = await wait_ready(http, url, want=503)
        assert body["status"] == "failed"
        assert "no model.safetensors" in body["reason"]
        await asyncio.sleep(0.05)
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503, "a failed load must never turn ready"
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
        status, scored = await post(http, f"{url}/v1/score", {"prompt": "p", "response": "r"})
        assert status == 503
        assert "no model.safetensors" in scored["error"]


async def test_a_transient_storage_error_is_retried() -> None:
    attempts: list[int] = []

    def flaky() -> LoadedModel:
        attempts.append(1)
        if len(attempts) < 3:
            raise StorageError("connection refused")
        return fake_model()

    async with running(flaky) as (http, url):
        await wait_ready(http, url)
    assert len(attempts) == 3


async def test_storage_errors_past_the_retries_fail() -> None:
    def down() -> LoadedModel:
        raise StorageError("connection refused")

    async with running(down) as (http, url):
        body = await wait_ready(http, url, want=503)
    assert "StorageError: connection refused" in body["reason"]


async def test_a_scorer_failure_is_a_500_and_the_server_survives() -> None:
    def scorer(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if "nan" in responses:
            return [math.nan] * len(responses)
        if "crash" in responses:
            raise RuntimeError("CUDA out of memory")
        return [1.0] * len(responses)

    async with running(lambda: fake_model(scorer)) as (http, url):
        await wait_ready(http, url)
        for text, message in (("nan", "non-finite"), ("crash", "internal error")):
            status, body = await post(http, f"{url}/v1/score", {"prompt": "p", "response": text})
            assert status == 500
            assert message in body["error"]
        status, body = await post(http, f"{url}/v1/score", {"prompt": "p", "response": "ok"})
        assert (status, body["score"]) == (200, 1.0)


async def test_metrics_count_requests_batches_scores_and_the_model() -> None:
    async with running(fake_model) as (http, url):
        await wait_ready(http, url)
        await asyncio.gather(
            *(
                post(http, f"{url}/v1/scores", {"prompt": "", "responses": ["ab", "abc"]})
                for _ in range(3)
            )
        )
        await post(http, f"{url}/v1/score", b"{")
        async with http.get(f"{url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    lines = set(text.splitlines())
    assert 'rewardops_serve_requests_total{endpoint="/v1/scores",status="200"} 3.0' in lines
    assert 'rewardops_serve_requests_total{endpoint="/v1/score",status="400"} 1.0' in lines
    assert 'rewardops_serve_request_duration_seconds_count{endpoint="/v1/scores"} 3.0' in lines
    assert "rewardops_serve_score_count 6.0" in lines
    assert "rewardops_serve_ready 1.0" in lines
    batch_sum = next(line for line in lines if line.startswith("rewardops_serve_batch_size_sum"))
    assert float(batch_sum.split()[1]) == 6.0
    info = next(line for line in lines if line.startswith("rewardops_serve_model_info{"))
    assert 'version="run-7"' in info
    assert 'digest="' + "ab" * 32 + '"' in info


def test_sigmoid_is_stable_for_large_margins() -> None:
    assert sigmoid(0.0) == 0.5
    assert sigmoid(1000.0) == 1.0
    assert sigmoid(-1000.0) == 0.0
    assert sigmoid(2.0) + sigmoid(-2.0) == pytest.approx(1.0)
