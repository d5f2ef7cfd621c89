"""Small frozen value types shared by the client, the store and the assets.

Bybit's JSON is mapped into these once (in `bybit.py`); nothing else touches raw dicts.
Prices stay the exchange's decimal strings so PostgreSQL NUMERIC stores them exactly.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

CANDLE_MS = 5 * 60 * 1000
"""Length of one raw candle (5 minutes) in milliseconds."""


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive datetimes are refused: they are ambiguous)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} is ambiguous; give a UTC time")
    return int(moment.timestamp() * 1000)


def parse_utc_time(value: str, *, name: str) -> datetime:
    """Parse an ISO 8601 time with an explicit UTC offset (e.g. 2025-01-01T00:00:00Z) for field `name`."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not an ISO 8601 time such as 2025-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name}: {value!r} has no UTC offset; add Z (e.g. 2025-01-01T00:00:00Z)")
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"{name}: {value!r} is outside the years 1-9999 in UTC") from None


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def grid_ceil(ms: int, step: int = CANDLE_MS) -> int:
    """Smallest grid point at or after `ms`."""
    return -(-ms // step) * step


def grid_floor(ms: int, step: int = CANDLE_MS) -> int:
    """Largest grid point at or before `ms`."""
    return ms // step * step


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed 5-minute candle as Bybit reported it (decimal strings, exact)."""

    start_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    turnover: str

    @property
    def start(self) -> datetime:
        return from_ms(self.start_ms)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A symbol as listed by `/v5/market/instruments-info` (launch time probed for spot)."""

    symbol: str
    category: str
    status: str
    launch_time: datetime | None
    delivery_time: datetime | None = None
    """When it stops (stopped) trading: Bybit's deliveryTime, or the end of a closed spot symbol's
    last candle; None while it trades with no end announced. The one rule of "delisted": no candle
    opens at or after it (sql/delistings.sql, sql/gap_context.sql, ingest); only a Closed status
    confirms it (an announced one may be postponed or cancelled)."""


@dataclass(frozen=True, slots=True)
class KlineWindow:
    """The closed candles of one request window [start_ms, end_ms] (inclusive, on the grid)."""

    start_ms: int
    end_ms: int
    candles: tuple[Candle, ...]
    closed_until_ms: int | None = None
    """Candles opening before this are closed by the exchange's clock (None: the whole window)."""
