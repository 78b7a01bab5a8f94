"""The server with a real (tiny, random) reward model: loading, verification, scoring."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rewardops_trainer.serve.app import ServeOptions, create_app, serving
from rewardops_trainer.serve.loader import ModelSource, load_model
from rewardops_trainer.storage import open_store, put_dir
from tests.support.s3server import S3Server
from tests.support.tiny_models import make_tiny_bert
from tests.unit.test_serve_loader import make_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")


@asynccontextmanager
async def running(source: ModelSource) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    options = ServeOptions(max_batch=4, max_wait_s=0.02, load_retry_delays_s=())
    app = create_app(partial(load_model, source), options)
    async with serving(app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
        yield http, url


async def settled(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    """The /readyz answer once loading is over (ready or failed)."""
    for _ in range(600):
        async with http.get(f"{url}/readyz") as response:
            body: dict[str, Any] = await response.json()
            if body["status"] != "loading":
                return response.status, body
        await asyncio.sleep(0.05)
    raise AssertionError(f"still loading: {body}")


def write_report(directory: Path, model_dir: Path, run_id: str) -> Path:
    from rewardops_trainer.model import file_digests

    artifacts = {f"model/{name}": digest for name, digest in file_digests(model_dir).items()}
    path = directory / "report.json"
    path.write_text(make_report(artifacts, run_id=run_id).to_json())
    return path


PROMPTS = ["How do I reset my password?", "Summarise the plot of Hamlet in one line."]
RESPONSES = [
    "Open settings, choose security, then reset.",
    "no",
    "A prince avenges his father and nearly everyone dies. " * 5,
    "[SEP] tricky [CLS] tokens",
    "",
]


async def test_served_scores_match_direct_scoring(tiny_model: Path, tmp_path: Path) -> None:
    from rewardops_trainer.model import load_reward_model, score

    async with running(ModelSource(uri=str(tiny_model), cache_dir=tmp_path)) as (http, url):
        status, body = await settled(http, url)
        assert status == 200, body

        async def scores(prompt: str) -> list[float]:
            payload = {"prompt": prompt, "responses": RESPONSES}
            async with http.post(f"{url}/v1/scores", json=payload) as response:
                assert response.status == 200
                return list((await response.json())["scores"])

        async def one(prompt: str, text: str) -> float:
            payload = {"prompt": prompt, "response": text}
            async with http.post(f"{url}/v1/score", json=payload) as response:
                return float((await response.json())["score"])

        # Concurrent requests land in shared, re-ordered batches; scores must not care.
        many, *singles = await asyncio.gather(
            scores(PROMPTS[0]), *(one(PROMPTS[1], text) for text in RESPONSES)
        )
        async with http.post(
            f"{url}/v1/compare",
            json={"prompt": PROMPTS[0], "first": RESPONSES[0], "second": RESPONSES[1]},
        ) as response:
            compared = await response.json()

    model, tokenizer = load_reward_model(tiny_model)
    direct = [
        score(model, tokenizer, [prompt] * len(RESPONSES), RESPONSES, max_length=512).tolist()
        for prompt in PROMPTS
    ]
    assert many == pytest.approx(direct[0], abs=1e-5)
    assert singles == pytest.approx(direct[1], abs=1e-5)
    assert len(set(direct[0])) > 1, "a constant model would make this test meaningless"
    assert compared["firstScore"] == pytest.approx(direct[0][0], abs=1e-5)


async def test_a_corrupt_model_never_becomes_ready(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    async with running(ModelSource(uri=str(broken), cache_dir=tmp_path)) as (http, url):
        status, body = await settled(http, url)
        assert status == 503
        assert body["status"] == "failed"
        assert "cannot load the weights" in body["reason"]
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
        async with http.post(f"{url}/v1/score", json={"prompt": "p", "response": "r"}) as response:
            assert response.status == 503


async def test_the_report_decides_readiness(tiny_model: Path, tmp_path: Path) -> None:
    report = write_report(tmp_path, tiny_model, run_id="run-42")
    async with running(
        ModelSource(uri=str(tiny_model), report_uri=str(report), cache_dir=tmp_path)
    ) as (http, url):
        status, body = await settled(http, url)
        assert (status, body["modelVersion"]) == (200, "run-42")

    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_model, tampered)
    config = json.loads((tampered / "config.json").read_text())
    config["hidden_dropout_prob"] = 0.5
    (tampered / "config.json").write_text(json.dumps(config))
    async with running(
        ModelSource(uri=str(tampered), report_uri=str(report), cache_dir=tmp_path)
    ) as (http, url):
        status, body = await settled(http, url)
        assert status == 503
        assert "digest differs: config.json" in body["reason"]


async def test_an_expected_digest_that_differs_blocks_readiness(
    tiny_model: Path, tmp_path: Path
) -> None:
    source = ModelSource(uri=str(tiny_model), expected_digest="0" * 64, cache_dir=tmp_path)
    async with running(source) as (http, url):
        status, body = await settled(http, url)
    assert status == 503
    assert "differs from the expected" in body["reason"]


async def test_a_model_and_report_in_s3(
    tiny_model: Path, tmp_path: Path, bucket: str, s3_env: S3Server
) -> None:
    run = f"s3://{bucket}/runs/run-9"
    store = open_store(run)
    put_dir(store, "model", tiny_model)
    store.put_file("report.json", write_report(tmp_path, tiny_model, run_id="run-9"))
    source = ModelSource(
        uri=f"{run}/model", report_uri=f"{run}/report.json", cache_dir=tmp_path / "cache"
    )
    async with running(source) as (http, url):
        status, body = await settled(http, url)
        assert (status, body["modelVersion"]) == (200, "run-9"), body
        async with http.get(f"{url}/v1/info") as response:
            info = await response.json()
    assert info["modelUri"] == f"{run}/model"


async def test_a_missing_s3_model_fails_with_its_uri(
    tmp_path: Path, bucket: str, s3_env: S3Server
) -> None:
    source = ModelSource(uri=f"s3://{bucket}/nothing/model", cache_dir=tmp_path)
    async with running(source) as (http, url):
        status, body = await settled(http, url)
    assert status == 503
    assert f"s3://{bucket}/nothing/model" in body["reason"]
