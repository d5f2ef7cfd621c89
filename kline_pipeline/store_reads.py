"""The candle store's reads: typed methods of `KlineStore` and the frozen dataclasses they return.

`KlineStore` (store.py) stays the one gateway to SQL: it inherits `StoreReads`, whose methods run
the read queries of sql/*.sql through `KlineStore.query` and turn their rows into the dataclasses
below, so the checks, gap reports, the doctor and the repair job read fields by name instead of
tuple positions. Each dataclass names the SQL file whose SELECT order its fields follow. Writes,
the schema and the connection live in store.py; this module reads only.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from kline_pipeline.models import Instrument

Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the live refresh knows about one symbol between ticks (sql/schema_006_live_state.sql)."""

    symbol: str
    last_tick_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    pending_since: datetime | None
    recorded_through: date | None
    reported_state: str | None
    reported_day: date | None

    @property
    def failing(self) -> bool:
        """The symbol's latest tick failed (its error is newer than its last success)."""
        return self.last_error_at is not None and (self.last_tick_at is None or self.last_error_at > self.last_tick_at)


@dataclass(frozen=True, slots=True)
class StoredSummary:
    """Count, first/last candle and checksum of stored 5m candles (sql/day_summary.sql)."""

    rows: int
    first_candle: datetime | None
    last_candle: datetime | None
    checksum: str


@dataclass(frozen=True, slots=True)
class Violation:
    """Candles of one UTC day breaking one rule (sql/ohlcv_violations.sql): how many, and the first."""

    day: date
    rule: str
    candles: int
    first_candle: datetime


@dataclass(frozen=True, slots=True)
class RollupMismatch:
    """A stored rollup bucket that differs from an exact recomputation (sql/rollup_mismatches.sql)."""

    bucket: datetime
    problem: str

    @property
    def day(self) -> date:
        return self.bucket.astimezone(UTC).date()


@dataclass(frozen=True, slots=True)
class PartialBucket:
    """A rollup bucket holding fewer 5m candles than a full one (sql/rollup_partial_buckets.sql)."""

    bucket: datetime
    candles: int

    @property
    def day(self) -> date:
        return self.bucket.astimezone(UTC).date()


@dataclass(frozen=True, slots=True)
class RollupBucket:
    """One exactly recomputed rollup bucket (sql/rollup_compute.sql): what the stored row must equal."""

    bucket: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    turnover: Decimal

    def values(self) -> tuple[Decimal, ...]:
        """Open, high, low, close, volume, turnover (the order of Bybit's kline rows)."""
        return self.open, self.high, self.low, self.close, self.volume, self.turnover


@dataclass(frozen=True, slots=True)
class GapHoles:
    """The holes in a symbol's stored 5m candles over a range, and how many it holds (sql/gap_holes.sql)."""

    present: int
    holes: tuple[tuple[datetime, datetime], ...]
    """[start, end) of each run of absent candles, in order."""

    @classmethod
    def from_rows(cls, rows: Sequence[Row]) -> "GapHoles":
        # (hole_start, hole_end, present); the end sentinel's row (no hole) is always there.
        return cls(present=rows[-1][2], holes=tuple((a, b) for a, b, _ in rows if a is not None))


@dataclass(frozen=True, slots=True)
class GapContext:
    """What explains holes over a range (sql/gap_context.sql): listing, delisting, recorded outages."""

    listing: datetime | None
    listing_known: bool
    """False: the symbol was never ingested, so nothing is known about its listing."""
    delisting: datetime | None
    outages: tuple[tuple[datetime, datetime], ...]

    @classmethod
    def from_rows(cls, rows: Sequence[Row]) -> "GapContext":
        # (launch_time, listing_known, outage start, outage end, delivery_time); always one row at least.
        launch, known, _, _, delivery = rows[0]
        return cls(listing=launch, listing_known=known, delisting=delivery,
                   outages=tuple((a, b) for _, _, a, b, _ in rows if a is not None))


@dataclass(frozen=True, slots=True)
class SymbolSpan:
    """First and newest stored 5m candle of a symbol (sql/health_symbols.sql); None: nothing stored."""

    symbol: str
    first: datetime | None
    newest: datetime | None


@dataclass(frozen=True, slots=True)
class RepairAttempt:
    """One row of `price_kline_gap_repairs` (sql/repair_history.sql)."""

    day: date
    attempted_at: datetime
    outage_before: int
    recovered: int
    still_out: int
    run_id: str | None

    def to_json(self) -> dict[str, object]:
        return {"day": self.day.isoformat(), "attempted_at": self.attempted_at.isoformat(),
                "outage_before": self.outage_before, "recovered": self.recovered, "still_out": self.still_out,
                "run_id": self.run_id}


def by_symbol_days(rows: Iterable[Row]) -> dict[str, list[date]]:
    """(symbol, day, …) rows -> the days of each symbol, in row order (sql/due_outage_repairs.sql)."""
    days: dict[str, list[date]] = {}
    for symbol, day, *_ in rows:
        days.setdefault(symbol, []).append(day)
    return days


class StoreReads:
    """`KlineStore`'s typed reads (a mixin: `KlineStore` provides `query`, the generic read)."""

    def query(self, sql_file: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # KlineStore.query runs the SQL

    def listing(self, symbol: str) -> Instrument | None:
        """The listing recorded by the last ingest of `symbol`, or None if it was never ingested."""
        row = self.listing_checked(symbol)
        return row[0] if row else None

    def listing_checked(self, symbol: str) -> tuple[Instrument, datetime] | None:
        """The recorded listing of `symbol` and when it was last checked with the exchange."""
        rows = self.query("listing.sql", {"symbol": symbol})
        if not rows:
            return None
        sym, category, launch, status, delivery, checked_at = rows[0]
        return Instrument(symbol=sym, category=category, status=status, launch_time=launch,
                          delivery_time=delivery), checked_at

    def live_states(self, symbols: Sequence[str]) -> dict[str, LiveState]:
        """The live state of each of `symbols` that the live refresh has seen."""
        return {row[0]: LiveState(*row) for row in self.query("live_states.sql", {"symbols": list(symbols)})}

    def last_candles(self, symbols: Sequence[str]) -> dict[str, datetime | None]:
        """Start of the newest stored 5m candle of each symbol (None: nothing stored)."""
        return dict(self.query("last_candles.sql", {"symbols": list(symbols)}))

    def delistings(self, symbols: Sequence[str]) -> dict[str, datetime | None]:
        """When each symbol stopped (stops) trading, as recorded at its last check: its delivery
        time (None: not delisted). See sql/delistings.sql."""
        found = {symbol: at for symbol, at, _ in self.query("delistings.sql", {"symbols": list(symbols)})}
        return {symbol: found.get(symbol) for symbol in symbols}

    def closed_symbols(self, symbols: Sequence[str], now: datetime) -> set[str]:
        """The symbols whose delisting is confirmed: recorded Closed, with their delivery time past.
        A delivery time alone may be postponed or cancelled; see live.refresh_symbol."""
        rows = self.query("delistings.sql", {"symbols": list(symbols)})
        return {symbol for symbol, at, status in rows if status == "Closed" and at is not None and at <= now}

    def last_candle(self, symbol: str) -> datetime | None:
        """Start of the newest stored 5m candle of `symbol`."""
        return self.query("last_candle.sql", {"symbol": symbol})[0][0]

    def day_counts(self, *, symbol: str, start: datetime, end: datetime) -> dict[date, int]:
        """Stored 5m candles of `symbol` per UTC day of [start, end) (days without any are absent)."""
        return dict(self.query("day_counts.sql", {"symbol": symbol, "start": start, "end": end}))

    def ohlcv_violations(self, *, symbol: str, start: datetime, end: datetime, closed_until: datetime) -> list[Violation]:
        """Candles of [start, end) breaking a rule, per day and first rule broken (sql/ohlcv_violations.sql)."""
        params = {"symbol": symbol, "start": start, "end": end, "closed_until": closed_until}
        return [Violation(*row) for row in self.query("ohlcv_violations.sql", params)]

    def rollup_mismatches(self, *, rollup: str, symbol: str, start: datetime, end: datetime) -> list[RollupMismatch]:
        """Stored buckets of `rollup` (a table name) in [start, end) that differ from a recomputation."""
        params = {"rollup": rollup, "symbol": symbol, "start": start, "end": end}
        return [RollupMismatch(*row) for row in self.query("rollup_mismatches.sql", params)]

    def rollup_partial_buckets(self, *, rollup: str, symbol: str, start: datetime, end: datetime) -> list[PartialBucket]:
        """Buckets of `rollup` in [start, end) with fewer 5m candles than a full one, in order."""
        params = {"rollup": rollup, "symbol": symbol, "start": start, "end": end}
        return [PartialBucket(*row) for row in self.query("rollup_partial_buckets.sql", params)]

    def rollup_buckets(self, *, rollup: str, symbol: str, start: datetime, end: datetime) -> list[RollupBucket]:
        """The exact buckets of `rollup` over [start, end), recomputed from the 5m candles, in order."""
        params = {"rollup": rollup, "symbol": symbol, "start": start, "end": end}
        return [RollupBucket(*row) for row in self.query("rollup_compute.sql", params)]

    def gap_holes(self, *, symbol: str, start: datetime, end: datetime) -> GapHoles:
        """The holes in the stored 5m candles of [start, end) (both on the grid) and the candles present."""
        return GapHoles.from_rows(self.query("gap_holes.sql", {"symbol": symbol, "start": start, "end": end}))

    def gap_context(self, *, symbol: str, start: datetime, end: datetime) -> GapContext:
        """The listing, delisting and recorded exchange outages that explain holes in [start, end)."""
        return GapContext.from_rows(self.query("gap_context.sql", {"symbol": symbol, "start": start, "end": end}))

    def symbol_spans(self, symbols: Sequence[str]) -> list[SymbolSpan]:
        """First and newest stored 5m candle of each symbol, by symbol (none given: proves the database answers)."""
        return [SymbolSpan(*row) for row in self.query("health_symbols.sql", {"symbols": list(symbols)})]

    def due_outage_repairs(self, *, symbols: Sequence[str], now: datetime,
                           delays: Sequence[timedelta]) -> dict[str, list[date]]:
        """The days per symbol whose recorded outages are due for a re-fetch (sql/due_outage_repairs.sql)."""
        return by_symbol_days(self.query("due_outage_repairs.sql",
                                         {"symbols": list(symbols), "now": now, "delays": list(delays)}))

    def outage_candles_by_day(self, *, symbol: str, days: Sequence[date]) -> dict[date, int]:
        """Candles inside recorded exchange outages of `symbol`, per day of `days` that has any."""
        return dict(self.query("outage_candles_by_day.sql", {"symbol": symbol, "days": list(days)}))

    def repair_history(self, *, symbol: str, start: datetime, end: datetime,
                       since: datetime | None = None) -> list[RepairAttempt]:
        """The outage repair attempts of `symbol` for the days of [start, end) (made at or after `since`)."""
        params = {"symbol": symbol, "start": start, "end": end, "since": since}
        return [RepairAttempt(*row) for row in self.query("repair_history.sql", params)]

    def summary(self, *, symbol: str, start: datetime, end: datetime) -> StoredSummary:
        """Count, first/last candle and checksum of the stored 5m candles in [start, end)."""
        rows, first, last, checksum = self.query("day_summary.sql", {"symbol": symbol, "start": start, "end": end})[0]
        return StoredSummary(rows=rows, first_candle=first, last_candle=last, checksum=checksum)
