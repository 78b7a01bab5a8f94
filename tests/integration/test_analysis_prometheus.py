"""Live analysis against a real Prometheus scraping real reference servers.

Three reference scoring servers (the trainer image's aiohttp app, with stand-in scorers instead
of a model) serve traffic: one healthy, one slow, one that errors. Debian's ``prometheus``
scrapes them on loopback; the core, fed by the Prometheus provider, keeps the healthy model and
rolls back the other two. Skipped where the ``prometheus`` binary is missing (apt package
``prometheus``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import pytest

from rewardops_operator.analysis.measure import measure_all, offline_scores
from rewardops_operator.api import conditions as cond
from rewardops_operator.api.models import Phase, RewardModelUpdate
from rewardops_operator.core import analysis
from rewardops_operator.core.observations import Observations
from rewardops_operator.core.reconcile import reconcile
from rewardops_operator.local.serving import free_port
from rewardops_trainer.serve.app import ServeOptions, create_app, serving
from rewardops_trainer.serve.loader import LoadedModel
from tests.unit.test_core_analysis import minutes, rollout_done
from tests.unit.test_core_naming import make_update
from tests.unit.test_core_reconcile import SETTINGS, after, message, phase, rolled_out

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's `prometheus` package"),
]
REQUESTS = 40
SLOW_SECONDS = 0.3


def healthy(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    return [len(r) / 10 for r in responses]


def slow(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    time.sleep(SLOW_SECONDS)
    return healthy(prompts, responses)


def broken(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    return [float("nan")] * len(responses)  # the server answers 500


SCORERS = {"healthy": healthy, "slow": slow, "broken": broken}


def model(variant: str) -> LoadedModel:
    return LoadedModel(
        uri=f"file:///{variant}", digest="ab" * 32, version=variant, device="cpu",
        scorer=SCORERS[variant],
    )  # fmt: skip


class ReferenceServers:
    """The reference server app, once per variant, on its own event loop thread."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        async with AsyncExitStack() as stack:
            for variant in SCORERS:
                app = create_app(partial(model, variant), ServeOptions(max_batch=8))
                self.urls[variant] = await stack.enter_async_context(serving(app, "127.0.0.1", 0))
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ReferenceServers:
        self._thread.start()
        assert self._ready.wait(30), "reference servers did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def send_traffic(url: str) -> set[int]:
    """The status codes answered to REQUESTS score requests, eight at a time."""

    def one(i: int) -> int:
        data = json.dumps({"prompt": "hi", "response": "x" * (i % 7)}).encode()
        request = urllib.request.Request(f"{url}/v1/score", data=data)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(one, range(REQUESTS)))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert PROMETHEUS is not None
    work = tmp_path_factory.mktemp("prometheus")
    with ReferenceServers() as servers:
        for url in servers.urls.values():
            deadline = time.monotonic() + 30
            while get_json(f"{url}/readyz").get("status") != "ready":
                assert time.monotonic() < deadline, f"{url} never ready"
                time.sleep(0.05)
        jobs = [
            {
                "job_name": variant,
                "static_configs": [
                    {"targets": [url.removeprefix("http://")], "labels": {"variant": variant}}
                ],
            }
            for variant, url in servers.urls.items()
        ]
        config = work / "prometheus.yml"
        config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}))
        address = f"127.0.0.1:{free_port()}"
        log = work / "prometheus.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address={address}"],
                stdout=subprocess.DEVNULL, stderr=log_file,
            )  # fmt: skip
        try:
            answered = {variant: send_traffic(url) for variant, url in servers.urls.items()}
            assert answered == {"healthy": {200}, "slow": {200}, "broken": {500}}
            wait_for_scrapes(f"http://{address}", log)
            yield f"http://{address}"
        finally:
            process.terminate()
            process.wait(30)


def wait_for_scrapes(base: str, log: Path) -> None:
    """Until Prometheus holds every variant's whole traffic."""
    query = "sum by (variant) (rewardops_serve_requests_total{endpoint='/v1/score'})"
    deadline = time.monotonic() + 60
    counts: dict[str, float] = {}
    while time.monotonic() < deadline:
        try:
            answer = get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}")
        except OSError:
            time.sleep(0.2)
            continue
        data = answer["data"]
        assert isinstance(data, dict)
        counts = {s["metric"]["variant"]: float(s["value"][1]) for s in data["result"]}
        if len(counts) == len(SCORERS) and min(counts.values()) >= REQUESTS:
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus never scraped the traffic ({counts}): {log.read_text()}")


def update_for(variant: str, base: str) -> RewardModelUpdate:
    selector = f'variant="{variant}",endpoint="/v1/score"'
    checks = [
        {
            "name": "p90-latency",
            "prometheus": {
                "address": base,
                "query": "histogram_quantile(0.9, sum by (le) "
                f"(rewardops_serve_request_duration_seconds_bucket{{{selector}}}))",
            },
            "max": "0.2",
        },
        {
            "name": "error-ratio",
            "prometheus": {
                "address": base,
                # `or vector(0)`: without a single 5xx the numerator has no series at all.
                "query": f'(sum(rewardops_serve_requests_total{{{selector},status=~"5.."}}) '
                f"or vector(0)) / sum(rewardops_serve_requests_total{{{selector}}})",
            },
            "max": "0.01",
        },
    ]
    spec = {"duration": "1m", "interval": "1m", "checks": checks}
    return make_update({"promotion": {"analysis": spec}})


def no_secrets(name: str, key: str) -> str:
    raise LookupError(name)


@pytest.mark.parametrize(
    ("variant", "outcome", "named"),
    [
        ("healthy", Phase.SUCCEEDED, "all 2 live check(s) passed"),
        ("slow", Phase.ROLLED_BACK, "live check p90-latency failed"),
        ("broken", Phase.ROLLED_BACK, "live check error-ratio failed"),
    ],
)
def test_real_prometheus_keeps_the_healthy_model_and_rolls_back_regressions(
    prometheus: str, variant: str, outcome: Phase, named: str
) -> None:
    update, _ = rollout_done(update_for(variant, prometheus))
    spec = analysis.wanted(update, minutes(1))
    assert spec is not None
    measured = measure_all(
        spec, offline_scores(update.status), targets=lambda check: [], secret=no_secrets
    )
    decision = reconcile(
        update,
        Observations(now=minutes(1), deployment=rolled_out(update), analysis=measured),
        SETTINGS,
    )
    assert phase(decision) == outcome, decision.status.analysis
    done = after(update, decision)
    assert done.status is not None
    assert done.status.analysis is not None
    assert named in done.status.analysis.message
    if outcome == Phase.ROLLED_BACK:
        assert named in message(decision, cond.ROLLED_BACK)
