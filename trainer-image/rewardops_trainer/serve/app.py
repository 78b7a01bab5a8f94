"""The HTTP side of the reference scoring server (aiohttp).

The model loads in the background so ``/healthz`` answers at once; ``/readyz`` turns 200 only
once :func:`~rewardops_trainer.serve.loader.load_model` (or the injected loader) succeeded.
A model that cannot load leaves the server up, alive and unready, with the reason on
``/readyz``: the rollout stalls and the operator rolls back. Scoring requests go through the
micro-batcher onto one worker thread, so the event loop stays free for HTTP and probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rewardops_trainer import __version__
from rewardops_trainer.serve.batcher import BatcherClosed, MicroBatcher, Overloaded
from rewardops_trainer.serve.limits import (
    Limits,
    RequestError,
    parse_json_object,
    reject_unknown,
    require_text,
    require_texts,
)
from rewardops_trainer.serve.loader import LoadedModel
from rewardops_trainer.serve.metrics import ServeMetrics
from rewardops_trainer.storage import ObjectNotFound, StorageError

log = logging.getLogger("rewardops.serve")

Loader = Callable[[], LoadedModel]


@dataclass(frozen=True)
class ServeOptions:
    max_batch: int = 32
    max_wait_s: float = 0.005
    max_queue: int = 4096
    limits: Limits = field(default_factory=Limits)
    shutdown_timeout_s: float = 30.0
    # An unreachable object store at start-up is worth a few retries before giving up.
    load_retry_delays_s: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)


class _State:
    def __init__(self) -> None:
        self.model: LoadedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.status = "loading"
        self.reason = "the model is loading"
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.loader_task: asyncio.Task[None] | None = None


STATE = web.AppKey("state", _State)
METRICS = web.AppKey("metrics", ServeMetrics)
OPTIONS = web.AppKey("options", ServeOptions)


def create_app(load: Loader, options: ServeOptions | None = None) -> web.Application:
    options = options or ServeOptions()
    metrics = ServeMetrics()
    app = web.Application(
        client_max_size=options.limits.max_body_bytes,
        middlewares=[_observe(metrics)],
    )
    app[STATE] = _State()
    app[METRICS] = metrics
    app[OPTIONS] = options
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/v1/info", _info)
    app.router.add_post("/v1/score", _score_one)
    app.router.add_post("/v1/scores", _score_many)
    app.router.add_post("/v1/compare", _compare)

    async def start_loading(app: web.Application) -> None:
        app[STATE].loader_task = asyncio.get_running_loop().create_task(
            _load_in_background(app, load), name="model-loader"
        )

    app.on_startup.append(start_loading)
    app.on_shutdown.append(_mark_stopping)
    app.on_cleanup.append(_stop)
    return app


async def _load_in_background(app: web.Application, load: Loader) -> None:
    state, metrics, options = app[STATE], app[METRICS], app[OPTIONS]
    loop = asyncio.get_running_loop()
    delays = list(options.load_retry_delays_s)
    while True:
        started = time.monotonic()
        try:
            loaded = await loop.run_in_executor(state.executor, load)
            break
        except StorageError as error:
            if isinstance(error, ObjectNotFound) or not delays:
                _fail(state, error)
                return
            delay = delays.pop(0)
            state.reason = f"loading; retrying in {delay:g}s after: {error}"
            log.warning("model load failed, retrying in %gs: %s", delay, error)
            await asyncio.sleep(delay)
        except Exception as error:  # any failure leaves the server up and unready
            _fail(state, error)
            return
    metrics.model.info(
        {
            "uri": loaded.uri,
            "digest": loaded.digest,
            "version": loaded.version,
            "device": loaded.device,
            "server_version": __version__,
        }
    )

    def observed(prompts: Sequence[str], responses: Sequence[str]) -> Sequence[float]:
        begin = time.perf_counter()
        scores = loaded.scorer(prompts, responses)
        metrics.observe_forward(scores, time.perf_counter() - begin)
        return scores

    batcher = MicroBatcher(
        observed,
        state.executor,
        max_batch=options.max_batch,
        max_wait_s=options.max_wait_s,
        max_queue=options.max_queue,
    )
    batcher.start()
    state.model, state.batcher = loaded, batcher
    state.status, state.reason = "ready", "ready"
    metrics.ready.set(1)
    log.info(
        "ready: %s (version %s, digest %s) on %s in %.1fs",
        loaded.uri,
        loaded.version,
        loaded.digest,
        loaded.device,
        time.monotonic() - started,
    )


def _fail(state: _State, error: BaseException) -> None:
    state.status, state.reason = "failed", f"{type(error).__name__}: {error}"
    log.error("the model cannot be served, staying unready: %s", state.reason)


async def _mark_stopping(app: web.Application) -> None:
    state = app[STATE]
    state.status, state.reason = "stopping", "the server is shutting down"
    app[METRICS].ready.set(0)


async def _stop(app: web.Application) -> None:
    """After in-flight requests finished: drain the batcher, then release the worker thread."""
    state = app[STATE]
    if state.batcher is not None:
        await state.batcher.close()
    if state.loader_task is not None and not state.loader_task.done():
        state.loader_task.cancel()
    # A load still running in the worker cannot be interrupted; do not wait for it.
    state.executor.shutdown(wait=False, cancel_futures=True)


def _observe(metrics: ServeMetrics) -> Any:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "unmatched"
        begin = time.perf_counter()
        try:
            response = await handler(request)
        except RequestError as error:
            response = _json(error.body(), status=error.status)
            if error.status == 503:
                response.headers["Retry-After"] = "1"
        except web.HTTPException as error:
            response = _json({"error": error.reason}, status=error.status)
        except Exception:  # a bug answers 500 and the server keeps serving
            log.exception("unexpected error on %s %s", request.method, request.path)
            response = _json({"error": "internal error; see the server log"}, status=500)
        metrics.requests.labels(endpoint, str(response.status)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - begin)
        return response

    return middleware


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, allow_nan=False), status=status, content_type="application/json"
    )


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, Any] = {"status": state.status, "reason": state.reason}
    if state.model is not None:
        body["modelVersion"] = state.model.version
    return _json(body, status=200 if state.status == "ready" else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _info(request: web.Request) -> web.Response:
    state, options = request.app[STATE], request.app[OPTIONS]
    model = state.model
    return _json(
        {
            "status": state.status,
            "reason": state.reason,
            "modelUri": model.uri if model else None,
            "modelDigest": model.digest if model else None,
            "modelVersion": model.version if model else None,
            "device": model.device if model else None,
            "serverVersion": __version__,
            "maxBatch": options.max_batch,
            "maxWaitMs": options.max_wait_s * 1000,
            "limits": {
                "maxBodyBytes": options.limits.max_body_bytes,
                "maxResponses": options.limits.max_responses,
                "maxChars": options.limits.max_chars,
            },
        }
    )


async def _body(request: web.Request) -> dict[str, Any]:
    limits = request.app[OPTIONS].limits
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(
            413, "body", f"request body is over the limit of {limits.max_body_bytes} bytes"
        ) from None
    return parse_json_object(raw)


async def _scores(request: web.Request, prompt: str, responses: Sequence[str]) -> list[float]:
    state = request.app[STATE]
    if state.batcher is None or state.model is None:
        raise RequestError(503, "model", f"not ready ({state.status}): {state.reason}")
    try:
        scores = await state.batcher.score([prompt] * len(responses), responses)
    except (Overloaded, BatcherClosed) as error:
        raise RequestError(503, "model", str(error)) from None
    if not all(math.isfinite(value) for value in scores):
        log.error("non-finite score from the model for a prompt of %d chars", len(prompt))
        raise RequestError(500, "model", "the model produced a non-finite score")
    return scores


async def _score_one(request: web.Request) -> web.Response:
    body = await _body(request)
    limits = request.app[OPTIONS].limits
    reject_unknown(body, {"prompt", "response"})
    prompt = require_text(body, "prompt", limits)
    response = require_text(body, "response", limits)
    (value,) = await _scores(request, prompt, [response])
    return _json({"score": value, "modelVersion": _version(request)})


async def _score_many(request: web.Request) -> web.Response:
    body = await _body(request)
    limits = request.app[OPTIONS].limits
    reject_unknown(body, {"prompt", "responses"})
    prompt = require_text(body, "prompt", limits)
    responses = require_texts(body, "responses", limits)
    scores = await _scores(request, prompt, responses)
    return _json({"scores": scores, "modelVersion": _version(request)})


async def _compare(request: web.Request) -> web.Response:
    body = await _body(request)
    limits = request.app[OPTIONS].limits
    reject_unknown(body, {"prompt", "first", "second"})
    prompt = require_text(body, "prompt", limits)
    first = require_text(body, "first", limits)
    second = require_text(body, "second", limits)
    first_score, second_score = await _scores(request, prompt, [first, second])
    return _json(
        {
            "firstScore": first_score,
            "secondScore": second_score,
            "probabilityFirstPreferred": sigmoid(first_score - second_score),
            "modelVersion": _version(request),
        }
    )


def sigmoid(x: float) -> float:
    """Bradley-Terry preference probability, without overflow for large margins."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _version(request: web.Request) -> str | None:
    model = request.app[STATE].model
    return model.version if model else None


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` for the block's duration; yields the base URL (``port`` 0 picks one).

    Leaving the block stops accepting connections, waits up to the shutdown timeout for
    in-flight requests, then drains the batcher and releases the model's thread.
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=app[OPTIONS].shutdown_timeout_s,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        address = runner.addresses[0]
        yield f"http://{address[0]}:{address[1]}"
    finally:
        await runner.cleanup()


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; then stop accepting, finish in-flight requests, return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with serving(app, host, port) as url:
            log.info("listening on %s", url)
            await stop.wait()
            log.info("signal received: finishing in-flight requests, then exiting")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")
