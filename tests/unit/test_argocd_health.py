"""docs/argocd/health.lua, run by a real Lua interpreter (Debian's lua5.4) on sample updates."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rewardops_operator.api.models import Phase, RewardModelUpdate

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "argocd" / "health.lua"
LUA = shutil.which("lua5.4")

if LUA is None:
    _reason = "lua5.4 is not installed (Debian package lua5.4)"
    if os.environ.get("CI"):
        pytest.fail(_reason, pytrace=False)
    pytestmark = pytest.mark.skip(reason=_reason)

EXPECTED = {
    Phase.SUCCEEDED: "Healthy",
    Phase.PENDING: "Progressing",
    Phase.TRAINING: "Progressing",
    Phase.EVALUATING: "Progressing",
    Phase.PROMOTING: "Progressing",
    Phase.VERIFYING: "Progressing",
    Phase.AWAITING_APPROVAL: "Suspended",
    Phase.REJECTED: "Degraded",
    Phase.ROLLED_BACK: "Degraded",
    Phase.FAILED: "Degraded",
}


def lua_literal(value: Any) -> str:
    """A Python JSON-like value as a Lua table constructor (lists become 1-based arrays)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no Lua literal")
        return repr(value)
    if isinstance(value, str):
        # Decimal escapes for every byte outside printable ASCII, so any text survives.
        escaped = "".join(
            chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}"
            for b in value.encode()
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        items = (f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"{type(value).__name__} has no Lua literal")


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the health script as Argo CD does: `obj` is a global, the chunk returns the table."""
    assert LUA is not None
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({lua_literal(str(SCRIPT))})\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    done = subprocess.run(
        [LUA, "-"], input=program, capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, done.stderr
    status, _, message = done.stdout.partition("\n")
    return status, message


def sample(phase: Phase | None, ready_message: str = "", generation: int = 1) -> dict[str, Any]:
    """A valid RewardModelUpdate (checked by the API models) in ``phase``, as the API serves it."""
    obj: dict[str, Any] = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    obj["metadata"]["generation"] = generation
    if phase is not None:
        ready = "True" if phase == Phase.SUCCEEDED else "False"
        obj["status"] = {
            "phase": phase.value,
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Trained",
                    "status": "True",
                    "reason": "JobSucceeded",
                    "message": "not the Ready condition",
                    "lastTransitionTime": "2026-11-20T10:00:00Z",
                },
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": phase.value,
                    "message": ready_message,
                    "lastTransitionTime": "2026-11-20T10:05:00Z",
                    "observedGeneration": 1,
                },
            ],
        }
    model = RewardModelUpdate.from_object(obj)
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def test_lua_literal_round_trips_awkward_text() -> None:
    text = 'quote " backslash \\ newline \n accent é ]] end'
    assert health(
        {"status": {"phase": "Failed", "conditions": [{"type": "Ready", "message": text}]}}
    ) == ("Degraded", text)


def test_every_phase_has_a_health() -> None:
    assert set(EXPECTED) == set(Phase), "a new phase needs a line in health.lua and here"


@pytest.mark.parametrize("phase", list(Phase), ids=[p.value for p in Phase])
def test_phase_maps_to_health(phase: Phase) -> None:
    status, message = health(sample(phase, ready_message=f"why {phase.value}"))
    assert status == EXPECTED[phase]
    assert message == f"why {phase.value}"


def test_degraded_carries_the_ready_message() -> None:
    text = "gate minHeldOutAccuracy: 0.58 < 0.60"
    assert health(sample(Phase.REJECTED, ready_message=text)) == ("Degraded", text)


def test_phase_is_the_message_without_a_ready_message() -> None:
    assert health(sample(Phase.TRAINING)) == ("Progressing", "Training")


def test_new_update_without_status_is_progressing() -> None:
    status, message = health(sample(None))
    assert status == "Progressing"
    assert "operator" in message


def test_stale_status_is_progressing() -> None:
    # The spec changed (generation 2) but the status still describes generation 1.
    status, message = health(sample(Phase.AWAITING_APPROVAL, generation=2))
    assert status == "Progressing"
    assert "generation 2" in message


def test_unknown_phase_is_unknown() -> None:
    assert health({"status": {"phase": "Exploded"}}) == ("Unknown", "Unknown phase Exploded")
