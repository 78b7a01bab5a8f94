"""Several GPUs on one node: one trainer process per GPU, each told its rank.

The processes find each other through ``MASTER_ADDR``/``MASTER_PORT`` on loopback and read
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``, as under ``torchrun --standalone``. Why not
torchrun itself: its exit code is 1 whatever the ranks exited with, so a bad config (exit 3)
would look like a crash and the Job's podFailurePolicy could not fail it at once. Here the pod
exits with the ranks' most telling code.

When one rank fails, the others are stopped: without it they would wait in a collective for
the rest of the Job's deadline. SIGTERM and SIGINT are passed on to every rank, which then
checkpoint and exit 130, as a single process does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from rewardops_trainer.contract.exit_codes import PERMANENT_EXIT_CODES, ExitCode

#: After one rank failed, how long the others get to stop on SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def exit_code_of(codes: Sequence[int]) -> int:
    """The pod's exit code from its ranks' codes: a permanent failure first (retrying cannot
    help), then a transient one, then an interruption, then a crash; 0 when all succeeded.
    A rank killed by a signal counts as a crash."""
    failed = [code if code >= 0 else ExitCode.CRASH for code in codes if code != 0]
    for wanted in (PERMANENT_EXIT_CODES, (ExitCode.TRANSIENT,), (ExitCode.INTERRUPTED,)):
        found = [code for code in failed if code in wanted]
        if found:
            return found[0]
    return failed[0] if failed else ExitCode.OK


def _stop(processes: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch(nproc: int, arguments: Sequence[str]) -> int:
    """Run ``rewardops-trainer <arguments>`` as ``nproc`` ranks; return the pod's exit code."""
    port = _free_port()
    processes: list[subprocess.Popen[bytes]] = []
    for rank in range(nproc):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
        command = [sys.executable, "-m", "rewardops_trainer", *arguments]
        processes.append(subprocess.Popen(command, env=env))

    def pass_on(signum: int, frame: FrameType | None) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            codes = [process.poll() for process in processes]
            if all(code is not None for code in codes):
                break
            if any(code not in (None, 0) for code in codes):
                _stop(processes, STOP_GRACE_SECONDS)
                break
            time.sleep(POLL_SECONDS)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code_of([process.wait() for process in processes])
