"""Live refresh: keep the latest candles and every rollup's lookback window current.

One tick, per symbol: re-fetch a bounded window (default: the longest lookback, so late candles
inside it are picked up), write it day by day, then refresh each rollup from the earlier of its
lookback and the first candle that changed. One exchange request per symbol in steady state.

The window is the tick's whole reach: older holes (after downtime longer than the window) are
never fetched silently here — the gap report and `no_missing_candles` show them, and
`kline-pipeline backfill --missing` launches the backfill that fills them.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from kline_pipeline.bybit import BybitClient
from kline_pipeline.ingest import IngestReport, sweep
from kline_pipeline.models import from_ms, grid_floor, to_ms
from kline_pipeline.partitions import validate_symbol
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.store import KlineStore, RollupSummary

DEFAULT_LOOKBACK_MINUTES = {"15m": 30, "30m": 60, "1h": 120, "4h": 480, "12h": 1440, "1d": 2880}
"""The old system's refresh-policy lookbacks, per rollup timeframe."""


def validate_lookbacks(lookbacks: dict[str, int]) -> dict[str, int]:
    """Every rollup timeframe needs a positive lookback in minutes; unknown names are refused."""
    allowed = [r.timeframe for r in ROLLUPS]
    unknown = sorted(set(lookbacks) - set(allowed))
    if unknown:
        raise ValueError(f"unknown rollup timeframe(s) {unknown} in lookbacks: allowed are {', '.join(allowed)}")
    merged = {**DEFAULT_LOOKBACK_MINUTES, **lookbacks}
    bad = {k: v for k, v in merged.items() if not isinstance(v, int) or v <= 0}
    if bad:
        raise ValueError(f"lookbacks must be positive minutes, got {bad}")
    return merged


@dataclass(frozen=True)
class SymbolTick:
    """What one tick did for one symbol."""

    symbol: str
    fetched_from: datetime
    closed_until: datetime
    ingest: IngestReport
    rollups: dict[str, tuple[datetime, datetime, RollupSummary]]

    @property
    def changed_days(self) -> list[date]:
        """Days in which a candle was inserted, updated or deleted by this tick."""
        return sorted({d.day for d in self.ingest.days if d.changed or d.deleted})


def refresh_symbol(
    *, bybit: BybitClient, store: KlineStore, symbol: str, now: datetime, lookbacks: dict[str, int],
    refetch: timedelta,
) -> SymbolTick:
    """One tick for one symbol: fetch the window, write it, refresh the rollups' lookback windows."""
    validate_symbol(symbol)
    requests_before = bybit.requests_made
    listing = store.listing(symbol)
    if listing is None:  # first tick for a new symbol: one extra request, remembered afterwards
        listing = bybit.get_instrument(symbol=symbol)
        store.record_listing(listing, checked_at=now)
    closed_until = from_ms(grid_floor(to_ms(now)))
    fetched_from = closed_until - refetch
    listed_ms = grid_floor(to_ms(listing.launch_time)) if listing.launch_time else to_ms(closed_until)
    with store.day_writer() as writer:
        report = sweep(writer, bybit, symbol=symbol, start=fetched_from, end=closed_until, now=now, listed_ms=listed_ms)
    report = IngestReport(requests=bybit.requests_made - requests_before) + report
    rollups = {}
    for rollup in ROLLUPS:
        start = closed_until - timedelta(minutes=lookbacks[rollup.timeframe])
        if report.first_changed is not None:
            start = min(start, report.first_changed)  # a late or corrected candle older than the lookback
        summary = store.refresh_rollup(rollup=rollup.table, symbol=symbol, start=start, end=closed_until)
        rollups[rollup.table] = (start, closed_until, summary)
    return SymbolTick(symbol=symbol, fetched_from=fetched_from, closed_until=closed_until, ingest=report,
                      rollups=rollups)
