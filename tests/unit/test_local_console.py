from __future__ import annotations

from rewardops_operator.api.models import GateResult
from rewardops_operator.local.console import gate_table


def test_gate_table_aligns_columns_and_marks_failures() -> None:
    table = gate_table(
        [
            GateResult(
                name="minHeldOutAccuracy", passed=True, value="0.91", limit="0.6", message="ok"
            ),
            GateResult(
                name="maxGoldenRegression", passed=False, value="0.4", limit="0.02", message="x"
            ),
        ]
    ).splitlines()
    assert len(table) == 3
    assert table[1].split()[:2] == ["minHeldOutAccuracy", "pass"]
    assert table[2].split()[:2] == ["maxGoldenRegression", "FAIL"]
    assert table[1].index("0.91") == table[2].index("0.4"), "value column is aligned"
