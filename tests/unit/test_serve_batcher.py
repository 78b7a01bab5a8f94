from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from rewardops_trainer.serve.batcher import BatcherClosed, MicroBatcher, Overloaded


class Recorder:
    """A scorer that scores a pair by its length and records every batch it saw."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.threads: set[str] = set()

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(responses))
        time.sleep(self.delay_s)
        if any(r == "boom" for r in responses):
            raise RuntimeError("model exploded")
        return [float(len(p) + len(r)) for p, r in zip(prompts, responses, strict=True)]


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    yield pool
    pool.shutdown(wait=True)


async def started(batcher: MicroBatcher) -> MicroBatcher:
    batcher.start()
    return batcher


async def test_concurrent_requests_share_a_forward(executor: ThreadPoolExecutor) -> None:
    scorer = Recorder()
    batcher = await started(MicroBatcher(scorer, executor, max_batch=8, max_wait_s=0.2))
    results = await asyncio.gather(*(batcher.score(["p"], ["x" * i]) for i in range(8)))
    await batcher.close()
    assert results == [[float(1 + i)] for i in range(8)]
    assert len(scorer.batches) == 1, "a full batch must not wait for max_wait"
    assert scorer.threads == {"model_0"}


async def test_batches_never_exceed_max_batch_and_are_length_sorted(
    executor: ThreadPoolExecutor,
) -> None:
    scorer = Recorder(delay_s=0.05)
    batcher = await started(MicroBatcher(scorer, executor, max_batch=4, max_wait_s=0.01))
    # The first forward keeps the worker busy while 12 more pairs queue up behind it.
    first = asyncio.ensure_future(batcher.score(["p"], ["first"]))
    await asyncio.sleep(0.02)
    lengths = [9, 1, 7, 3, 11, 5, 2, 10, 4, 8, 6, 12]
    results = await batcher.score(["p"] * len(lengths), ["x" * n for n in lengths])
    await first
    await batcher.close()
    assert results == [float(1 + n) for n in lengths], "results come back in request order"
    later = scorer.batches[1:]
    assert all(len(batch) <= 4 for batch in later)
    flat = [len(r) for batch in later for r in batch]
    assert flat == sorted(lengths), "queued pairs are forwarded shortest first"


async def test_a_lone_request_waits_at_most_about_max_wait(executor: ThreadPoolExecutor) -> None:
    batcher = await started(MicroBatcher(Recorder(), executor, max_batch=32, max_wait_s=0.05))
    begin = time.monotonic()
    assert await batcher.score(["p"], ["r"]) == [2.0]
    elapsed = time.monotonic() - begin
    await batcher.close()
    assert 0.04 <= elapsed < 1.0


async def test_a_failed_forward_fails_its_requests_only(executor: ThreadPoolExecutor) -> None:
    batcher = await started(MicroBatcher(Recorder(), executor, max_batch=2, max_wait_s=0.0))
    with pytest.raises(RuntimeError, match="exploded"):
        await batcher.score(["p", "p"], ["ok", "boom"])
    assert await batcher.score(["p"], ["fine"]) == [5.0]
    await batcher.close()


async def test_a_wrong_number_of_scores_is_an_error(executor: ThreadPoolExecutor) -> None:
    batcher = await started(MicroBatcher(lambda p, r: [0.0], executor, max_batch=4, max_wait_s=0.0))
    with pytest.raises(RuntimeError, match="1 scores for 2 pairs"):
        await batcher.score(["p", "p"], ["a", "b"])
    await batcher.close()


async def test_overload_and_closing_refuse_new_work(executor: ThreadPoolExecutor) -> None:
    batcher = await started(
        MicroBatcher(Recorder(), executor, max_batch=2, max_wait_s=0.0, max_queue=3)
    )
    with pytest.raises(Overloaded, match="limit 3"):
        await batcher.score(["p"] * 4, ["r"] * 4)
    await batcher.close()
    with pytest.raises(BatcherClosed):
        await batcher.score(["p"], ["r"])


async def test_close_finishes_queued_work(executor: ThreadPoolExecutor) -> None:
    batcher = await started(MicroBatcher(Recorder(), executor, max_batch=32, max_wait_s=5.0))
    pending = asyncio.ensure_future(batcher.score(["p"], ["queued"]))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(batcher.close(), timeout=2.0)
    assert pending.result() == [7.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"max_wait_s": -1.0}, "max_wait_s"),
        ({"max_batch": 8, "max_queue": 4}, "max_queue"),
    ],
)
def test_bad_settings_are_refused(
    kwargs: dict[str, float], message: str, executor: ThreadPoolExecutor
) -> None:
    with pytest.raises(ValueError, match=message):
        MicroBatcher(Recorder(), executor, **kwargs)  # type: ignore[arg-type]
