"""Progress reads a step's loss only when it shows it (reading it off a GPU is a sync)."""

from __future__ import annotations

import io
import json

from rewardops_trainer.progress import Progress


class CountingLoss:
    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.value


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_job_log_reads_the_loss_only_for_the_lines_it_writes() -> None:
    stream = io.StringIO()
    progress = Progress(enabled=True, stream=stream)
    progress.start(50)
    loss = CountingLoss(0.25)
    for step in range(1, 51):
        progress.step(step, loss=loss, pairs_per_s=10.0, lr=1e-5)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # Quick steps log only the last one (the next line is due LOG_INTERVAL_S later).
    assert [line["step"] for line in lines] == [50]
    assert lines[0]["loss"] == 0.25
    assert loss.calls == 1


def test_a_terminal_bar_reads_the_loss_at_most_once_a_second_and_at_the_end() -> None:
    progress = Progress(enabled=True, stream=Terminal())
    progress.start(50)
    loss = CountingLoss(0.5)
    for step in range(1, 51):
        progress.step(step, loss=loss, pairs_per_s=10.0, lr=1e-5)
    progress.close()
    assert loss.calls == 2  # the first step, then the last


def test_a_disabled_progress_never_reads_the_loss() -> None:
    progress = Progress(enabled=False)
    progress.start(3)
    loss = CountingLoss(1.0)
    for step in range(1, 4):
        progress.step(step, loss=loss, pairs_per_s=1.0, lr=1e-5)
    assert loss.calls == 0
