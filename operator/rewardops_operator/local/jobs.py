"""Trainer Jobs as local `rewardops-trainer` processes, with the Job's config and env: training
runs (``train``) and fresh-feedback evaluations (``feedback``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO

from rewardops_operator.core.observations import JobState
from rewardops_trainer.contract import (
    FEEDBACK_CONFIG_ENV,
    RUN_CONFIG_ENV,
    FeedbackConfig,
    RunConfig,
)

_TAIL_LINES = 20


class _Tee(threading.Thread):
    """Copies a child's stderr to our stderr and a log file, keeping the last lines for errors."""

    def __init__(self, source: IO[bytes], log: Path, echo: bool) -> None:
        super().__init__(daemon=True)
        self.source = source
        self.log = log
        self.echo = echo
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)

    def run(self) -> None:
        pending = b""
        with self.source, self.log.open("ab") as log:
            while chunk := os.read(self.source.fileno(), 65536):
                log.write(chunk)
                log.flush()
                if self.echo:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.buffer.flush()
                pending += chunk
                *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
                self.tail.extend(line.decode(errors="replace") for line in lines if line.strip())
        if pending.strip():
            self.tail.append(pending.decode(errors="replace"))


class LocalJobs:
    """Runs each Job as one trainer process; observing it gives the Job's state."""

    def __init__(self, log_dir: Path, env: dict[str, str], *, echo: bool = True) -> None:
        self.log_dir = log_dir
        self.env = env
        self.echo = echo
        self._processes: dict[str, tuple[subprocess.Popen[bytes], _Tee]] = {}

    def create(self, name: str, config: RunConfig | FeedbackConfig) -> None:
        if name in self._processes:
            return  # like a 409 from the API server: already created
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, RunConfig):
            command, variable = "train", RUN_CONFIG_ENV
        else:
            command, variable = "feedback", FEEDBACK_CONFIG_ENV
        env = {**os.environ, **self.env, variable: config.to_json()}
        process = subprocess.Popen(
            [sys.executable, "-m", "rewardops_trainer", command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches us first; we stop the trainer cleanly
        )
        assert process.stderr is not None
        tee = _Tee(process.stderr, self.log_dir / f"{name}.log", self.echo)
        tee.start()
        self._processes[name] = (process, tee)

    def observe(self, name: str | None) -> JobState | None:
        if name is None or name not in self._processes:
            return None
        process, tee = self._processes[name]
        code = process.poll()
        if code is None:
            return JobState(name=name, active=1)
        tee.join(timeout=5)
        if code == 0:
            return JobState(name=name, succeeded=True, exit_code=0)
        # The trainer's own "error: ..." lines say why; the log lines around them are noise.
        errors = [line for line in tee.tail if line.startswith("error")]
        message = "\n".join(errors or tee.tail)
        return JobState(name=name, failed=True, exit_code=code, message=message)

    def delete(self, name: str) -> None:
        entry = self._processes.get(name)
        if entry is None:
            return
        process, tee = entry
        if process.poll() is None:
            # SIGTERM lets the trainer write its checkpoint, as a pod's termination would.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        tee.join(timeout=5)

    def stop_all(self) -> None:
        for name in list(self._processes):
            self.delete(name)
