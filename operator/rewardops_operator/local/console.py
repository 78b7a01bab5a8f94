"""What `rewardops run` prints: stage changes, the gate table, the final status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
import yaml

from rewardops_operator.api.models import GateResult, RewardModelUpdateStatus
from rewardops_operator.core.actions import Action, EmitEvent
from rewardops_operator.local.driver import LocalUpdate

_PHASE_COLOURS = {
    "Succeeded": "green",
    "Rejected": "yellow",
    "RolledBack": "yellow",
    "Failed": "red",
}


def gate_table(gates: Sequence[GateResult]) -> str:
    rows = [("gate", "result", "value", "limit", "detail")]
    rows += [(g.name, "pass" if g.passed else "FAIL", g.value, g.limit, g.message) for g in gates]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("      " + "  ".join(cells) + "  " + row[4])
    return "\n".join(lines)


def report_change(item: LocalUpdate, new: RewardModelUpdateStatus, actions: list[Action]) -> None:
    """Print what changed between the item's last status and ``new``: the phase, then the
    events that narrate it, then the gate table once the gates were checked."""
    old = item.status
    prefix = click.style(f"[{item.name}]", bold=True)
    if new.phase != old.phase and new.phase is not None:
        colour = _PHASE_COLOURS.get(str(new.phase))
        click.echo(f"{prefix} {click.style(str(new.phase), fg=colour, bold=True)}")
    for action in actions:
        if isinstance(action, EmitEvent):
            colour = "yellow" if action.type == "Warning" else None
            click.echo(f"    {click.style(action.reason, fg=colour)}: {action.message}")
    if new.gates and new.gates != old.gates:
        candidate = new.candidate.held_out_accuracy if new.candidate else "-"
        served = new.baseline.held_out_accuracy if new.baseline else "none"
        click.echo(f"    gates (held-out accuracy: candidate {candidate}, served {served}):")
        click.echo(gate_table(new.gates))


def status_yaml(status: RewardModelUpdateStatus) -> str:
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.safe_dump({"status": data}, sort_keys=False, width=100)
