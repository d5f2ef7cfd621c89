"""The reliability suite records what it tried and what held; `docs/reliability.md` is made from it.

    KLINE_RELIABILITY_DOC=docs/reliability.md python -m pytest kline_pipeline_tests/reliability

writes the table after the session (only when asked: tests never write into the checkout).
"""

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

_rows: list["Trial"] = []


@dataclass
class Trial:
    area: str
    tried: str
    held: str
    rows_lost: int = 0
    duplicates: int = 0
    outcome: str = "not finished"


class Ledger:
    """Handed to each test: `ledger.record(...)` once its assertions passed."""

    def __init__(self, node: pytest.Item) -> None:
        self.node = node

    def record(self, area: str, tried: str, held: str, *, rows_lost: int = 0, duplicates: int = 0) -> None:
        _rows.append(Trial(area, tried, held, rows_lost, duplicates, outcome=f"passed ({self.node.name})"))


@pytest.fixture
def ledger(request) -> Ledger:
    return Ledger(request.node)


def pytest_sessionfinish(session, exitstatus) -> None:
    target = os.environ.get("KLINE_RELIABILITY_DOC")
    if not target or not _rows:
        return
    lines = [
        "# Reliability: what was tried and what held",
        "",
        f"Produced by `KLINE_RELIABILITY_DOC={target} python -m pytest kline_pipeline_tests/reliability` "
        f"on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC ({len(_rows)} trials recorded; a trial is recorded "
        "only after all of its assertions passed). Rows lost and duplicates are counted by comparing the stored "
        "candles with the exchange's (the simulator's) own.",
        "",
        "| area | what was tried | what held | rows lost | duplicates |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.area} | {r.tried} | {r.held} | {r.rows_lost} | {r.duplicates} |" for r in _rows]
    Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
