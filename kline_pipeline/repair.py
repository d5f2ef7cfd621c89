"""Outages that repair themselves: recorded exchange outages are re-fetched on a schedule.

Exchanges sometimes fill an outage later. Every outage in the ledger (`price_kline_gaps`) is
re-fetched after each delay of KLINE_OUTAGE_REPAIR_AFTER (default 1h, 24h and 7d after it was
first seen; a missed milestone is caught up once, not once per delay). The `outage_repair`
schedule checks hourly and launches `outage_repair_job` only when something is due, so each
attempt is a Dagster run in the UI. A run re-fetches the due (symbol, day)s through the ingest
path (`ingest_days`: one request per day, each day one transaction), so candles that appeared are
written and the ledger shrinks; it records each attempt in `price_kline_gap_repairs` (what `gaps`
and the doctor show), logs a `price_klines_5m` materialization and the raw checks for each day
whose candles changed (rollup_refresh_sensor then refreshes that day's rollups, with their
checks), and its output metadata says what was recovered. Safe to re-run: a day is re-fetched
whole, and an attempt is recorded once per run.
"""

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from kline_pipeline.bybit import BybitClient
from kline_pipeline.gaps import GapReport
from kline_pipeline.ingest import IngestReport, ingest_days
from kline_pipeline.store import KlineStore, RepairAttempt

DELAYS_ENV = "KLINE_OUTAGE_REPAIR_AFTER"
DEFAULT_DELAYS = "1h,24h,7d"
_DELAY = re.compile(r"^(\d{1,5})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_delays(text: str | None) -> list[timedelta]:
    """`"1h,24h,7d"` -> sorted delays; a bad item is a ValueError naming it and the allowed form."""
    raw = DEFAULT_DELAYS if text is None or not text.strip() else text
    delays = set()
    for item in raw.split(","):
        match = _DELAY.fullmatch(item.strip())
        if not match or int(match.group(1)) == 0:
            raise ValueError(f"{DELAYS_ENV}: {item.strip()!r} is not a delay: use a comma-separated list of "
                             f"whole minutes, hours or days above 0, e.g. {DEFAULT_DELAYS}")
        delays.add(timedelta(**{_UNITS[match.group(2)]: int(match.group(1))}))
    return sorted(delays)


def delays_from_env() -> list[timedelta]:
    return parse_delays(os.environ.get(DELAYS_ENV))


def describe(delays: Sequence[timedelta]) -> str:
    def one(d: timedelta) -> str:
        minutes = int(d.total_seconds() // 60)
        return f"{minutes // 1440}d" if minutes % 1440 == 0 and minutes > 1440 else f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"

    return ", ".join(one(d) for d in delays)


def due_repairs(store: KlineStore, *, symbols: Sequence[str], now: datetime,
                delays: Sequence[timedelta]) -> dict[str, list[date]]:
    """The days per symbol whose recorded outages are due for a re-fetch (sql/due_outage_repairs.sql)."""
    return store.due_outage_repairs(symbols=symbols, now=now, delays=delays)


@dataclass(frozen=True)
class DayRepair:
    """One re-fetched (symbol, day): the outage candles recorded before and after, and what came back."""

    symbol: str
    day: date
    outage_before: int
    still_out: int
    changed: int

    @property
    def recovered(self) -> int:
        return max(0, self.outage_before - self.still_out)


def _outage_candles(store: KlineStore, symbol: str, days: Sequence[date]) -> dict[date, int]:
    return store.outage_candles_by_day(symbol=symbol, days=days)


def repair_symbol(*, bybit: BybitClient, store: KlineStore, symbol: str, days: Sequence[date], now: datetime,
                  run_id: str | None = None) -> tuple[list[DayRepair], IngestReport]:
    """Re-fetch `days` of `symbol` (the ingest path), then record each day's attempt."""
    before = _outage_candles(store, symbol, days)
    report = ingest_days(bybit=bybit, store=store, symbol=symbol, days=days, now=now)
    after = _outage_candles(store, symbol, days)
    changed = {d.day: d.changed for d in report.days}
    repairs = [DayRepair(symbol, day, before.get(day, 0), after.get(day, 0), changed.get(day, 0)) for day in days]
    store.execute("record_repairs.sql", {
        "symbol": symbol, "at": now, "run_id": run_id, "days": [r.day for r in repairs],
        "before": [r.outage_before for r in repairs], "recovered": [r.recovered for r in repairs],
        "still_out": [r.still_out for r in repairs]})
    return repairs, report


def repair_history(store: KlineStore, *, symbol: str, start: datetime, end: datetime,
                   since: datetime | None = None) -> list[RepairAttempt]:
    """The repair attempts of `symbol` for the days of [start, end) (made at or after `since`)."""
    return store.repair_history(symbol=symbol, start=start, end=end, since=since)


def gaps_json(store: KlineStore, report: GapReport) -> dict[str, Any]:
    """`kline-pipeline gaps --json` and the API's type=gaps: the report and the repair history of its days."""
    return {**report.to_json(), "repairs": [a.to_json() for a in repair_history(
        store, symbol=report.symbol, start=report.start, end=report.end)]}
