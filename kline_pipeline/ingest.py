"""Fetch a symbol's days from Bybit and write them to the store, one transaction per day.

The asset is a thin wrapper around `ingest_partitions`; the benchmark calls the same code.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import TypedDict

from kline_pipeline.bybit import BybitClient
from kline_pipeline.models import CANDLE_MS, Candle, Instrument, from_ms, grid_ceil, grid_floor, to_ms
from kline_pipeline.prefetch import prefetched
from kline_pipeline.partitions import contiguous_runs, days_by_symbol, split_market, validate_symbol
from kline_pipeline.event_writes import Metadata
from kline_pipeline.store import DayWriter, KlineStore

DAY = timedelta(days=1)

_log = logging.getLogger(__name__)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "none"


@dataclass(frozen=True)
class DayReport:
    """What one ingest did to one (symbol, day): the metadata of that partition's materialization."""

    symbol: str
    day: date
    rows: int = 0
    changed: int = 0
    deleted: int = 0
    requests: float = 0.0
    """This day's share of the requests: each 1000-candle window counts for the fraction of its slots in the day."""
    first_candle: datetime | None = None
    last_candle: datetime | None = None
    empty_reason: str | None = None

    def metadata(self) -> Metadata:
        meta: Metadata = {
            "category": split_market(self.symbol)[0],
            "rows": self.rows, "rows_changed": self.changed, "rows_deleted": self.deleted,
            "requests": round(self.requests, 3),
            "first_candle": _iso(self.first_candle), "last_candle": _iso(self.last_candle),
        }
        if self.empty_reason:
            meta["empty_reason"] = self.empty_reason
        return meta


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did, summed over symbols, with each day's own figures in `days`."""

    partitions: int = 0
    days_written: int = 0
    days_before_listing: int = 0
    days_after_delisting: int = 0
    days_in_future: int = 0
    candles: int = 0
    changed: int = 0
    deleted: int = 0
    requests: int = 0
    first_candle: datetime | None = None
    last_candle: datetime | None = None
    first_changed: datetime | None = None
    listings: dict[str, str] = field(default_factory=dict)
    days: tuple[DayReport, ...] = ()

    def __add__(self, other: "IngestReport") -> "IngestReport":
        firsts = [t for t in (self.first_candle, other.first_candle) if t]
        lasts = [t for t in (self.last_candle, other.last_candle) if t]
        changes = [t for t in (self.first_changed, other.first_changed) if t]
        return IngestReport(
            partitions=self.partitions + other.partitions,
            days_written=self.days_written + other.days_written,
            days_before_listing=self.days_before_listing + other.days_before_listing,
            days_after_delisting=self.days_after_delisting + other.days_after_delisting,
            days_in_future=self.days_in_future + other.days_in_future,
            candles=self.candles + other.candles,
            changed=self.changed + other.changed,
            deleted=self.deleted + other.deleted,
            requests=self.requests + other.requests,
            first_candle=min(firsts) if firsts else None,
            last_candle=max(lasts) if lasts else None,
            first_changed=min(changes) if changes else None,
            listings={**self.listings, **other.listings},
            days=self.days + other.days,
        )

    def run_metadata(self) -> Metadata:
        """Figures of the whole run, shown beside each day's own (prefixed `run_`)."""
        return {
            "run_partitions": self.partitions,
            "run_rows": self.candles,
            "run_requests": self.requests,
            "listing_times": ", ".join(f"{s}: {t}" for s, t in sorted(self.listings.items())) or "none",
        }


class _Judged(TypedDict):
    """How `_write` judges a day's fetched span: from the listing, up to what has closed."""

    listed_ms: int
    closed_until_ms: int
    now: datetime


def _write(
    writer: DayWriter, symbol: str, start: datetime, end: datetime, candles: list[Candle], *, listed_ms: int,
    closed_until_ms: int, now: datetime, requests: float,
) -> IngestReport:
    """Write the candles of [start, end) (within one day), of which only the closed part was fetched."""
    # Stale rows and outages are judged inside the fetched, closed, listed span only.
    end = from_ms(max(min(to_ms(end), closed_until_ms), to_ms(start)))
    fetched_start = from_ms(min(max(to_ms(start), listed_ms), to_ms(end)))
    result = writer.write_day(
        symbol=symbol, start=start, end=end, candles=candles, fetched_start=fetched_start, seen=now
    )
    first, last = (candles[0].start, candles[-1].start) if candles else (None, None)
    day = DayReport(symbol=symbol, day=start.date(), rows=result.candles, changed=result.changed,
                    deleted=result.deleted, requests=requests, first_candle=first, last_candle=last)
    return IngestReport(
        days_written=1,
        candles=result.candles,
        changed=result.changed,
        deleted=result.deleted,
        first_candle=first,
        last_candle=last,
        first_changed=result.first_changed,
        days=(day,),
    )


def _slots_by_day(first_ms: int, last_ms: int) -> dict[date, int]:
    """Candle slots of the window [first_ms, last_ms] (inclusive, on the grid) per UTC day."""
    slots: dict[date, int] = defaultdict(int)
    day_ms = int(DAY.total_seconds() * 1000)
    ms = first_ms
    while ms <= last_ms:
        day_end = (ms // day_ms + 1) * day_ms
        upto = min(last_ms + CANDLE_MS, day_end)
        slots[from_ms(ms).date()] += (upto - ms) // CANDLE_MS
        ms = upto
    return slots


def checked_instrument(bybit: BybitClient, symbol: str) -> Instrument:
    """The instrument of partition symbol `symbol`, refused unless it is that very market: rows of
    another market (spot prices under a linear name) must never be written."""
    instrument = bybit.get_instrument(symbol=symbol)
    if instrument.symbol != symbol or instrument.category != split_market(symbol)[0]:
        raise ValueError(f"Bybit answered the instrument of {instrument.symbol!r} ({instrument.category}) "
                         f"for {symbol!r}: refusing to write another market's candles under its name")
    return instrument


def sweep(
    writer: DayWriter, bybit: BybitClient, *, symbol: str, start: datetime, end: datetime, now: datetime,
    listed_ms: int, delisted_ms: int | None = None,
) -> IngestReport:
    """Fetch [start, end) in 1000-candle windows and write it day by day, each day's part in its
    own transaction as soon as the windows have passed its end (bounded memory; a failure
    leaves whole day-parts only). `start` may fall inside a day (live refresh). Nothing is
    fetched or judged from `delisted_ms` on (the symbol stopped trading there)."""
    report = IngestReport()
    closed_ms = grid_floor(to_ms(now))
    if delisted_ms is not None:
        closed_ms = min(closed_ms, grid_ceil(delisted_ms))
    where: _Judged = {"listed_ms": listed_ms, "closed_until_ms": closed_ms, "now": now}
    first_day, last_day = start.date(), (end - timedelta(microseconds=1)).date()
    bounds = {
        first_day + timedelta(days=i): (max(start, day_start(first_day + timedelta(days=i))),
                                        min(end, day_start(first_day + timedelta(days=i)) + DAY))
        for i in range((last_day - first_day).days + 1)
    }
    pending: dict[date, list[Candle]] = {day: [] for day in bounds}
    shares: dict[date, float] = defaultdict(float)
    fetch_from = max(start, from_ms(listed_ms))
    fetch_to = min(end, from_ms(closed_ms)) if delisted_ms is not None else end
    windows = bybit.iter_kline_windows(symbol=symbol, start=fetch_from, end=fetch_to, now=now)
    for window in prefetched(windows):
        for candle in window.candles:
            pending[candle.start.date()].append(candle)
        slots = _slots_by_day(window.start_ms, window.end_ms)
        for day, n in slots.items():
            shares[day] += n / sum(slots.values())
        covered_until = window.end_ms + CANDLE_MS
        if window.closed_until_ms is not None and window.closed_until_ms < covered_until:
            # The exchange's clock is behind ours: what it has not closed yet is neither stale
            # nor an outage, so the writes judge only up to its close.
            covered_until = window.closed_until_ms
            where["closed_until_ms"] = min(where["closed_until_ms"], covered_until)
        for day in [d for d in pending if to_ms(bounds[d][1]) <= covered_until]:
            report = report + _write(writer, symbol, *bounds[day], pending.pop(day), requests=shares[day], **where)
    for day in sorted(pending):  # the partial last day, and days with no candles at all
        report = report + _write(writer, symbol, *bounds[day], pending.pop(day), requests=shares[day], **where)
    return report


def ingest_days(
    *, bybit: BybitClient, store: KlineStore, symbol: str, days: Sequence[date], now: datetime,
    log: logging.Logger | None = None,
) -> IngestReport:
    """Fetch and store the given UTC days of one symbol.

    Days that end before the listing are counted as empty without a request; days that start
    after `now` are skipped. Each contiguous run of days is one `sweep`.
    """
    log = log or _log
    validate_symbol(symbol)
    days = sorted(set(days))
    report = IngestReport(partitions=len(days))
    requests_before = bybit.requests_made
    instrument = checked_instrument(bybit, symbol)
    store.record_listing(instrument, checked_at=now)
    listing = instrument.launch_time
    listed = listing.isoformat() if listing else "no candles yet"
    if instrument.delivery_time is not None:
        listed += f", delisted {instrument.delivery_time.isoformat()}"
    report = report + IngestReport(listings={symbol: listed})

    delisting = instrument.delivery_time
    live_days: list[date] = []
    for day in days:
        if listing is None or day_start(day) + DAY <= listing:
            reason = f"before the listing ({_iso(listing)})" if listing else "the exchange has no candle for it yet"
            report = report + IngestReport(days_before_listing=1, days=(DayReport(symbol, day, empty_reason=reason),))
        elif delisting is not None and day_start(day) >= delisting:
            # No candle can exist after it: an empty day with its reason, not a hole, no request.
            reason = f"delisted: after the delisting ({_iso(delisting)}, status {instrument.status or 'unknown'})"
            report = report + IngestReport(days_after_delisting=1, days=(DayReport(symbol, day, empty_reason=reason),))
        elif day_start(day) >= now:
            report = report + IngestReport(days_in_future=1, days=(DayReport(symbol, day, empty_reason="in the future"),))
        else:
            live_days.append(day)

    listed_ms = grid_floor(to_ms(listing)) if listing else 0
    with store.day_writer() as writer:
        for run in contiguous_runs(live_days):
            report = report + sweep(writer, bybit, symbol=symbol, start=day_start(run[0]),
                                    end=day_start(run[-1]) + DAY, now=now, listed_ms=listed_ms,
                                    delisted_ms=to_ms(delisting) if delisting else None)
    log.info("%s: %d days written, %d candles", symbol, report.days_written, report.candles)
    return replace(report, requests=bybit.requests_made - requests_before)


def ingest_partitions(
    *, bybit: BybitClient, store: KlineStore, partition_keys: Sequence[str], now: datetime,
    log: logging.Logger | None = None,
) -> IngestReport:
    """`ingest_days` for every symbol among `partition_keys` ("YYYY-MM-DD|SYMBOL")."""
    report = IngestReport()
    for symbol, days in days_by_symbol(partition_keys).items():
        report = report + ingest_days(bybit=bybit, store=store, symbol=symbol, days=days, now=now, log=log)
    return report
