"""Live refresh: keep the latest candles and every rollup's lookback window current.

One tick, per symbol: re-fetch a bounded window (default: the longest lookback, so late candles
inside it are picked up), write it day by day, then refresh each rollup from the earlier of its
lookback and the first candle that changed. One exchange request per symbol in steady state.

The window is the tick's whole reach: older holes (after downtime longer than the window) are
never fetched silently here — the gap report and `no_missing_candles` show them, and
`kline-pipeline backfill --missing` launches the backfill that fills them.

A tick's changes are never lost to a failure later in the tick: the earliest changed candle is
written to `price_kline_live_state.pending_since` right after the candles, and the next tick
refreshes the rollups from there (and records those days) until a tick has done both.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from kline_pipeline.bybit import BybitClient
from kline_pipeline.ingest import IngestReport, sweep
from kline_pipeline.models import CANDLE_MS, from_ms, grid_floor, to_ms
from kline_pipeline.partitions import validate_symbol
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.store import KlineStore, LiveState, RollupSummary

CANDLE = timedelta(milliseconds=CANDLE_MS)
DEFAULT_LOOKBACK_MINUTES = {rollup.timeframe: rollup.lookback_minutes for rollup in ROLLUPS}
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
    pending_since: datetime | None = None
    """The earliest candle changed by this tick or an earlier one whose days are not recorded yet."""
    recorded_through: date | None = None
    """The last day whose final state a tick has recorded (None: none yet)."""
    corrected: bool = False
    """A changed candle is older than the previous successful tick's close: a correction or a late
    candle, not just the newly closed ones."""

    @property
    def changed_days(self) -> list[date]:
        """Days in which a candle was changed, by this tick or an unfinished earlier one."""
        if self.pending_since is None:
            return []
        first, last = self.pending_since.date(), (self.closed_until - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def days_to_record(self, *, today_materialized: bool) -> list[date]:
        """Changed days, and the days that closed since the last recorded one (inside the fetched
        window: older days were not fetched by the live refresh); today only while it has no
        materialization yet or a candle of it was corrected (appending new candles changes it every
        tick; it is recorded final after midnight)."""
        today = (self.closed_until - timedelta(microseconds=1)).date()
        since = self.recorded_through + timedelta(days=1) if self.recorded_through else today - timedelta(days=1)
        since = max(since, self.fetched_from.date())
        closed = [since + timedelta(days=i) for i in range((today - since).days)]
        days = set(self.changed_days) | set(closed)
        if today_materialized and not self.corrected:
            days.discard(today)
        return sorted(days)


def refresh_symbol(
    *, bybit: BybitClient, store: KlineStore, symbol: str, now: datetime, lookbacks: dict[str, int],
    refetch: timedelta, state: LiveState | None = None,
) -> SymbolTick:
    """One tick for one symbol: fetch the window, write it, refresh the rollups' lookback windows
    (from further back where this or an unfinished earlier tick changed older candles). `state` is
    what earlier ticks left (store.live_states)."""
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
    pending = [t for t in (state.pending_since if state else None, report.first_changed) if t is not None]
    if report.first_changed is not None:
        store.mark_live_pending(symbol=symbol, since=report.first_changed)  # kept until recorded
    rollups = {}
    for rollup in ROLLUPS:
        start = closed_until - timedelta(minutes=lookbacks[rollup.timeframe])
        if pending:
            start = min(start, *pending)  # a late or corrected candle older than the lookback
        summary = store.refresh_rollup(rollup=rollup.table, symbol=symbol, start=start, end=closed_until)
        rollups[rollup.table] = (start, closed_until, summary)
    previous_close = from_ms(grid_floor(to_ms(state.last_tick_at))) if state and state.last_tick_at else None
    return SymbolTick(symbol=symbol, fetched_from=fetched_from, closed_until=closed_until, ingest=report,
                      rollups=rollups, pending_since=min(pending, default=None),
                      recorded_through=state.recorded_through if state else None,
                      corrected=bool(pending and previous_close and min(pending) < previous_close - CANDLE))
