from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from rewardops_operator.local.proxy import SwitchingProxy
from rewardops_operator.local.serving import free_port


@contextmanager
def answering(text: str) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return str(response.read().decode())


def test_proxy_switches_backends_without_changing_port() -> None:
    proxy = SwitchingProxy(free_port())
    proxy.start()
    try:
        with answering("old") as old, answering("new") as new:
            proxy.switch(old)
            assert fetch(proxy.port) == "old"
            proxy.switch(new)
            assert fetch(proxy.port) == "new"
    finally:
        proxy.stop()
