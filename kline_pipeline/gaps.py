"""Gap reports: which expected 5-minute candles are absent over a range, and why.

Holes are found by one SQL query over the stored timestamps (`sql/gap_holes.sql`); each hole
is then split against the few intervals that explain absences: before the listing
(`not_listed`), from the delisting on (`delisted`: the symbol stopped trading), at or after the
last closed candle (`not_yet_closed`), inside a recorded exchange outage (`exchange_outage`);
the rest is `missing` (never fetched, or lost).

Closed-ness is judged by the exchange's clock, which ingest follows (a candle Bybit still calls
open is dropped): the local `now` may run ahead of it, so a slot that closes within
`CLOCK_SKEW_MARGIN_MS` of `now` is still `not_yet_closed`, never `missing`.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from kline_pipeline.models import CANDLE_MS, from_ms, grid_ceil, grid_floor, to_ms
from kline_pipeline.partitions import split_market, validate_symbol
from kline_pipeline.store import KlineStore
from kline_pipeline.store_reads import GapHoles

MISSING = "missing"
OUTAGE = "exchange_outage"
NOT_LISTED = "not_listed"
NOT_CLOSED = "not_yet_closed"
DELISTED = "delisted"
CAUSES = (MISSING, OUTAGE, NOT_LISTED, NOT_CLOSED, DELISTED)
CLOCK_SKEW_MARGIN_MS = 30_000
"""How far the local clock may run ahead of the exchange's before a candle ingest dropped as
still open (by the exchange's clock) would be called missing."""


def closed_bound_ms(now: datetime) -> int:
    """Candles opening before this are closed by the exchange's clock, allowing the local clock to
    be up to CLOCK_SKEW_MARGIN_MS ahead of it."""
    return grid_floor(to_ms(now) - CLOCK_SKEW_MARGIN_MS)


@dataclass(frozen=True, slots=True)
class GapSpan:
    """[start, end) of absent candles sharing one cause."""

    start: datetime
    end: datetime
    cause: str

    @property
    def candles(self) -> int:
        return (to_ms(self.end) - to_ms(self.start)) // CANDLE_MS


@dataclass(frozen=True)
class GapReport:
    symbol: str
    start: datetime
    end: datetime
    listing: datetime | None
    listing_known: bool
    present: int
    spans: tuple[GapSpan, ...] = field(default_factory=tuple)
    delisting: datetime | None = None

    @property
    def totals(self) -> dict[str, int]:
        counts = Counter({cause: 0 for cause in CAUSES})
        for span in self.spans:
            counts[span.cause] += span.candles
        return dict(counts)

    @property
    def expected(self) -> int:
        """Candles that should exist: the grid minus what is not listed, delisted or not yet closed."""
        totals = self.totals
        grid = (to_ms(self.end) - to_ms(self.start)) // CANDLE_MS
        return grid - totals[NOT_LISTED] - totals[NOT_CLOSED] - totals[DELISTED]

    @property
    def missing(self) -> int:
        return self.totals[MISSING]

    def to_json(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "category": split_market(self.symbol)[0],
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "listing": self.listing.isoformat() if self.listing else None,
            "delisting": self.delisting.isoformat() if self.delisting else None,
            "expected": self.expected,
            "present": self.present,
            "totals": self.totals,
            "gaps": [
                {"start": s.start.isoformat(), "end": s.end.isoformat(), "candles": s.candles, "cause": s.cause}
                for s in self.spans
            ],
        }

    def markdown(self, limit: int = 50) -> str:
        """The spans as a markdown table (first `limit` rows), for asset-check metadata."""
        lines = ["| start | end | candles | cause |", "|---|---|---|---|"]
        lines += [f"| {s.start:%Y-%m-%d %H:%M} | {s.end:%Y-%m-%d %H:%M} | {s.candles} | {s.cause} |"
                  for s in self.spans[:limit]]
        if len(self.spans) > limit:
            lines.append(f"| … | {len(self.spans) - limit} more spans | | |")
        return "\n".join(lines)


def _subtract(span: tuple[int, int], cuts: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split `span` into (parts inside any of `cuts`, parts outside), in ms, sorted."""
    inside, outside, cursor = [], [], span[0]
    for lo, hi in sorted(cuts):
        lo, hi = max(lo, span[0]), min(hi, span[1])
        if lo >= hi or hi <= cursor:
            continue
        if lo > cursor:
            outside.append((cursor, lo))
        inside.append((max(lo, cursor), hi))
        cursor = hi
    if cursor < span[1]:
        outside.append((cursor, span[1]))
    return inside, outside


def classify(hole: tuple[int, int], *, listed_ms: int | None, closed_ms: int, outages: list[tuple[int, int]],
             delisted_ms: int | None = None) -> list[GapSpan]:
    """Split one hole (ms) by cause; see the module docstring."""
    parts: list[tuple[int, int, str]] = []
    lo, hi = hole
    if listed_ms is not None and lo < listed_ms:
        parts.append((lo, min(hi, listed_ms), NOT_LISTED))
        lo = min(hi, listed_ms)
    if delisted_ms is not None and hi > delisted_ms and lo < hi:
        parts.append((max(lo, delisted_ms), hi, DELISTED))
        hi = max(lo, delisted_ms)
    if hi > closed_ms and lo < hi:
        parts.append((max(lo, closed_ms), hi, NOT_CLOSED))
        hi = max(lo, closed_ms)
    if lo < hi:
        inside, outside = _subtract((lo, hi), outages)
        parts += [(a, b, OUTAGE) for a, b in inside] + [(a, b, MISSING) for a, b in outside]
    merged: list[tuple[int, int, str]] = []
    for a, b, cause in sorted(parts):
        if merged and merged[-1][1] == a and merged[-1][2] == cause:  # ledger rows end at midnight
            merged[-1] = (merged[-1][0], b, cause)
        else:
            merged.append((a, b, cause))
    return [GapSpan(from_ms(a), from_ms(b), cause) for a, b, cause in merged]


def gap_report(store: KlineStore, *, symbol: str, start: datetime, end: datetime, now: datetime,
               holes: GapHoles | None = None) -> GapReport:
    """Absent candles of `symbol` opening in [start, end), classified; see the module docstring.
    `holes`: the stored holes of [start, end) (on the 5m grid) when the caller has already read
    them (an export reads them with its rows), else they are read here."""
    validate_symbol(symbol)
    if start >= end:
        raise ValueError(f"invalid range: start {start.isoformat()} is not before end {end.isoformat()}")
    lo, hi = from_ms(grid_ceil(to_ms(start))), from_ms(grid_ceil(to_ms(end)))
    if holes is not None and (lo, hi) != (start, end):
        raise ValueError("holes read by the caller must cover a range on the 5m grid")
    stored = holes if holes is not None else store.gap_holes(symbol=symbol, start=lo, end=hi)
    hole_ms = [(to_ms(a), to_ms(b)) for a, b in stored.holes]
    context = store.gap_context(symbol=symbol, start=lo, end=hi)
    launch, listing_known, delivery = context.listing, context.listing_known, context.delisting
    outages = [(to_ms(a), to_ms(b)) for a, b in context.outages]
    delisted_ms = grid_ceil(to_ms(delivery)) if delivery else None
    # A symbol never ingested has no known listing: its holes are simply missing.
    listed_ms = (grid_floor(to_ms(launch)) if launch else to_ms(hi)) if listing_known else None
    spans = [
        span for hole in hole_ms
        for span in classify(hole, listed_ms=listed_ms, closed_ms=closed_bound_ms(now), outages=outages,
                             delisted_ms=delisted_ms)
    ]
    return GapReport(symbol=symbol, start=lo, end=hi, listing=launch, listing_known=listing_known,
                     present=stored.present, spans=tuple(spans), delisting=delivery)


def missing_days(report: GapReport) -> list[date]:
    """The UTC days of the report that hold a `missing` span (what a backfill of them would fill)."""
    days: set[date] = set()
    for span in report.spans:
        if span.cause == MISSING:
            last = (span.end - timedelta(microseconds=1)).date()
            days.update(span.start.date() + timedelta(days=i) for i in range((last - span.start.date()).days + 1))
    return sorted(days)
