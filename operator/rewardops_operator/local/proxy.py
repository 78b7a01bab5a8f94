"""A TCP forwarder on the serving port: a rollout switches its backend without a gap."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class SwitchingProxy:
    """Forwards connections on ``127.0.0.1:port`` to the current backend port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.backend_port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=10)
        if self._error is not None:
            raise OSError(f"cannot listen on 127.0.0.1:{self.port}: {self._error}")

    def switch(self, backend_port: int) -> None:
        self.backend_port = backend_port

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.port)
            )
        except OSError as error:
            self._error = error
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._server.close()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self.backend_port
        if backend is None:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError):
            writer.close()
