"""What the checks read: each kind of fact fetched ONCE per symbol for all the days of a check step,
through `KlineStore`'s typed reads (store_reads.py); writes nothing.

A run of 92 days issues ~15 queries instead of ~30 per partition; each day's slice equals what a
query over that day alone returns, because every bucket, hole cause and violation belongs to one
UTC day.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

from kline_pipeline.gaps import GapReport, GapSpan, gap_report
from kline_pipeline.ingest import DAY, day_start
from kline_pipeline.models import from_ms, grid_floor, to_ms
from kline_pipeline.partitions import days_by_symbol, split_partition_key
from kline_pipeline.rollups import Rollup
from kline_pipeline.store import KlineStore, LiveState, PartialBucket, RollupMismatch, Violation


class _OfOneDay(Protocol):
    """A row that belongs to one UTC day (a violation, a rollup bucket)."""

    @property
    def day(self) -> date: ...


OfDay = TypeVar("OfDay", bound=_OfOneDay)


class Facts:
    """The facts of the partitions `keys` at `now`, read lazily and memoised per symbol."""

    def __init__(self, store: KlineStore, keys: Sequence[str], now: datetime) -> None:
        self.store, self.now = store, now
        self._days = days_by_symbol(keys)
        self._cache: dict[tuple, object] = {}

    def _memo(self, key: tuple, compute: Callable[[], object]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _window(self, symbol: str) -> tuple[datetime, datetime]:
        days = self._days[symbol]
        return day_start(days[0]), day_start(days[-1]) + DAY

    def _by_day(self, rows: Iterable[OfDay]) -> dict[date, list[OfDay]]:
        grouped: dict[date, list[OfDay]] = defaultdict(list)
        for row in rows:
            grouped[row.day].append(row)
        return grouped

    def gaps(self, key: str) -> GapReport:
        """The gap report of one partition's day."""
        day, symbol = split_partition_key(key)
        start, end = self._window(symbol)
        counts = self._memo(("counts", symbol), lambda: self.store.day_counts(symbol=symbol, start=start, end=end))
        whole = self._memo(("gaps", symbol), lambda: gap_report(
            self.store, symbol=symbol, start=start, end=end, now=self.now))
        return replace(whole, start=day_start(day), end=day_start(day) + DAY, present=counts.get(day, 0),
                       spans=clip(whole.spans, day_start(day), day_start(day) + DAY))

    def violations(self, key: str) -> list[Violation]:
        """The day's candles that break a rule: per rule, how many and the first."""
        day, symbol = split_partition_key(key)
        start, end = self._window(symbol)
        closed_until = from_ms(grid_floor(to_ms(self.now)))
        rows = self._memo(("ohlcv", symbol), lambda: self._by_day(self.store.ohlcv_violations(
            symbol=symbol, start=start, end=end, closed_until=closed_until)))
        return rows.get(day, [])

    def rollup(self, rollup: Rollup, key: str) -> tuple[list[RollupMismatch], list[PartialBucket]]:
        """(mismatched buckets, partial buckets) of the day in `rollup`."""
        day, symbol = split_partition_key(key)
        start, end = self._window(symbol)
        mismatches = self._memo(("mismatches", rollup.table, symbol), lambda: self._by_day(
            self.store.rollup_mismatches(rollup=rollup.table, symbol=symbol, start=start, end=end)))
        partial = self._memo(("partial", rollup.table, symbol), lambda: self._by_day(
            self.store.rollup_partial_buckets(rollup=rollup.table, symbol=symbol, start=start, end=end)))
        return mismatches.get(day, []), partial.get(day, [])

    def last_candle(self, symbol: str) -> datetime | None:
        return self._memo(("last", symbol), lambda: self.store.last_candle(symbol))

    def delisting(self, symbol: str) -> datetime | None:
        """When `symbol` stopped (stops) trading, as its last ingest recorded it (None: not delisted)."""
        return self._memo(("delisting", symbol), lambda: self.store.delistings([symbol])[symbol])

    def live_state(self, symbol: str) -> LiveState | None:
        """What the last live ticks recorded for `symbol` (None: never refreshed live)."""
        return self._memo(("live", symbol), lambda: self.store.live_states([symbol]).get(symbol))

    def prefetch_latest(self, symbols: Sequence[str]) -> "Facts":
        """Read the newest candle and live state of many symbols in two queries (freshness of all)."""
        states = self.store.live_states(symbols)
        delistings = self.store.delistings(symbols)
        for symbol, newest in self.store.last_candles(symbols).items():
            self._cache[("last", symbol)] = newest
            self._cache[("live", symbol)] = states.get(symbol)
            self._cache[("delisting", symbol)] = delistings.get(symbol)
        return self


def clip(spans: Iterable[GapSpan], start: datetime, end: datetime) -> tuple[GapSpan, ...]:
    """The parts of `spans` inside [start, end)."""
    return tuple(GapSpan(max(s.start, start), min(s.end, end), s.cause) for s in spans
                 if s.start < end and s.end > start)
