"""Dynamic micro-batching: (prompt, response) pairs from concurrent requests share forwards.

Requests enqueue pairs and await futures. One task drains the queue: it waits until either
``max_batch`` pairs are pending or the oldest pending pair has waited ``max_wait_s``, then takes
up to ``lookahead`` batches' worth, sorts them by length (so each forward pads little) and runs
them on the model's single worker thread, keeping the event loop free for HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

Scorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
"""A blocking function: prompts and responses in, one finite float per pair out."""


class Overloaded(Exception):
    """More pairs are queued than ``max_queue``; the client should retry later."""


class BatcherClosed(Exception):
    """The server is shutting down and takes no new work."""


@dataclass
class _Pending:
    prompt: str
    response: str
    future: asyncio.Future[float]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def length(self) -> int:
        # Characters stand in for tokens: tokenizing twice would cost more than it saves.
        return len(self.prompt) + len(self.response)


class MicroBatcher:
    def __init__(
        self,
        scorer: Scorer,
        executor: Executor,
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 4096,
        lookahead: int = 4,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        if max_queue < max_batch:
            raise ValueError(f"max_queue ({max_queue}) must be at least max_batch ({max_batch})")
        self._scorer = scorer
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._take = max_batch * max(1, lookahead)
        self._pending: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if self._closed or self._task is None:
            raise BatcherClosed("the server is shutting down")
        if len(self._pending) + len(prompts) > self.max_queue:
            raise Overloaded(f"{len(self._pending)} pairs queued (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        items = [
            _Pending(prompt, response, loop.create_future())
            for prompt, response in zip(prompts, responses, strict=True)
        ]
        self._pending.extend(items)
        self._wakeup.set()
        results = await asyncio.gather(*(item.future for item in items), return_exceptions=True)
        scores: list[float] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            scores.append(result)
        return scores

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill()
            batch = [self._pending.popleft() for _ in range(min(self._take, len(self._pending)))]
            batch.sort(key=lambda item: item.length)
            for start in range(0, len(batch), self.max_batch):
                await self._forward(batch[start : start + self.max_batch])

    async def _fill(self) -> None:
        """Wait for a full batch, at most until the oldest pair has waited ``max_wait_s``."""
        deadline = self._pending[0].enqueued + self.max_wait_s
        while len(self._pending) < self.max_batch and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _forward(self, chunk: list[_Pending]) -> None:
        live = [item for item in chunk if not item.future.done()]
        if not live:
            return
        loop = asyncio.get_running_loop()
        try:
            scores = await loop.run_in_executor(
                self._executor,
                self._scorer,
                [item.prompt for item in live],
                [item.response for item in live],
            )
            if len(scores) != len(live):
                raise RuntimeError(f"scorer returned {len(scores)} scores for {len(live)} pairs")
        except Exception as error:  # one failed forward fails its requests, not the server
            for item in live:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        for item, value in zip(live, scores, strict=True):
            if not item.future.done():
                item.future.set_result(float(value))
