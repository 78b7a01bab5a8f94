"""Progress: a tqdm bar with throughput on a terminal, JSON log lines in a Job, a final summary.

Everything goes to stderr, so stdout stays free for a command's own output.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

LOG_INTERVAL_S = 10.0
#: How often a terminal's bar shows a new loss.
BAR_LOSS_INTERVAL_S = 1.0


class Progress:
    """Stage events and a step counter; silent when ``enabled`` is false."""

    def __init__(self, *, enabled: bool, stream: IO[str] | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._bar: Any = None
        self._total = 0
        self._last_log = 0.0
        self._last_bar_loss = 0.0

    def log(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        if self.tty:
            detail = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"{event} {detail}".rstrip()
            if self._bar is not None:
                self._bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)
            return
        record = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "event": event}
        record.update(fields)
        print(json.dumps(record, default=str), file=self.stream, flush=True)

    def start(self, total: int, initial: int = 0) -> None:
        """Begin counting optimizer steps up to ``total``."""
        self._total = total
        self._last_log = time.monotonic()
        if self.enabled and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, unit="step", file=self.stream, dynamic_ncols=True
            )

    def step(self, step: int, *, loss: Callable[[], float], pairs_per_s: float, lr: float) -> None:
        """Count an optimizer step. ``loss`` is called only when it is shown: reading a loss
        off a GPU waits for all the work queued there, so doing it every step would stall it."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            if now - self._last_bar_loss >= BAR_LOSS_INTERVAL_S or step == self._total:
                self._last_bar_loss = now
                postfix = {"loss": f"{loss():.4f}", "pairs_s": f"{pairs_per_s:.1f}"}
                self._bar.set_postfix(postfix, refresh=False)
            return
        if now - self._last_log >= LOG_INTERVAL_S or step == self._total:
            self._last_log = now
            self.log(
                "train_step",
                step=step,
                total=self._total,
                loss=round(loss(), 6),
                pairs_per_s=round(pairs_per_s, 2),
                lr=lr,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
