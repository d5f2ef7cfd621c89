"""Check a backfill or gap-report request before anything is launched, added or read.

Shared by the HTTP API (`kline_pipeline.api`, `api_klines`), the CLI (`gaps`, `backfill`, `export`)
and `kline_pipeline.backfills`, which launches what passes. Every problem raises `RequestError`, a
ValueError naming the offending field, so the API can answer `{"error", "field"}` and the CLI name
the option. Reads only its arguments and KLINE_API_MAX_DAYS; asks the exchange (when given a
client) only after every local check passed, so a malformed request costs no exchange request.
"""

import os
import re
from datetime import date, datetime, timedelta, timezone

from kline_pipeline.bybit import BybitClient, UnknownSymbolError
from kline_pipeline.models import parse_utc_time
from kline_pipeline.partitions import START_DATE, validate_symbol

UTC = timezone.utc
EARLIEST = datetime(2010, 1, 1, tzinfo=UTC)
"""Ranges wholly before this are refused: no exchange has 5-minute crypto candles that old."""

MAX_DAYS_ENV = "KLINE_API_MAX_DAYS"
DEFAULT_MAX_DAYS = 3660
"""About ten years: one request's backfill stays a size the daemon and the UI handle well."""

BACKFILL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Dagster's backfill ids are 8 lowercase letters; anything outside this never names one."""


class RequestError(ValueError):
    """A request was refused; `field` names the offending input (symbol, start, end, …)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def max_days_from_env() -> int:
    """KLINE_API_MAX_DAYS, default 3660; a bad value is a configuration error, said plainly."""
    text = os.environ.get(MAX_DAYS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_DAYS
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{MAX_DAYS_ENV}={text!r} is not a whole number of days") from None
    if value < 1:
        raise ValueError(f"{MAX_DAYS_ENV}={text!r} must be at least 1")
    return value


def validate_backfill_id(value: object) -> str:
    """`value` if it can be a backfill id, else RequestError naming field `id`."""
    allowed = "the backfill_id a launch returned (1-64 letters, digits, _ and -)"
    if value in (None, ""):
        raise RequestError("id", f"id is required: {allowed}")
    if not isinstance(value, str) or not BACKFILL_ID.fullmatch(value):
        raise RequestError("id", f"id {value!r} is not a backfill id: use {allowed}")
    return value


def _time_field(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise RequestError(name, f"{name}: expected an ISO 8601 UTC time string such as 2025-01-01T00:00:00Z")
    try:
        return parse_utc_time(value, name=name)
    except ValueError as exc:
        raise RequestError(name, str(exc)) from None


def validate_request(
    symbol: object, start_text: object, end_text: object, *, now: datetime, max_days: int,
    bybit: BybitClient | None = None,
) -> tuple[str, datetime, datetime]:
    """Check a backfill (or gap report) request; return (symbol, start, end) in UTC.

    Local checks come first (symbol pattern, ISO times with an offset, start < end, not wholly
    in the future or before 2010, at most `max_days` days), so a malformed request costs no
    exchange request. Then, if `bybit` is given, the exchange must list the symbol (an unknown
    symbol is a `RequestError` on `symbol`; an unreachable exchange raises the client's
    BybitError, which is not the caller's fault).
    """
    if symbol is None or symbol == "":
        raise RequestError("symbol", "symbol is required, e.g. BTCUSDT")
    try:
        checked = validate_symbol(symbol)  # `symbol` itself, known to be a str from here on
    except ValueError as exc:
        raise RequestError("symbol", str(exc)) from None
    start = _time_field(start_text, "start")
    end = _time_field(end_text, "end")
    if start >= end:
        raise RequestError("end", f"end {end.isoformat()} must be after start {start.isoformat()}")
    if start >= now:
        raise RequestError("start", f"the range starts at {start.isoformat()}, in the future (now is "
                           f"{now.isoformat(timespec='seconds')}); only past candles can be fetched")
    if end <= EARLIEST:
        raise RequestError("end", f"the range ends at {end.isoformat()}, wholly before "
                           f"{EARLIEST.date().isoformat()}; there are no candles that old")
    if end - start > timedelta(days=max_days):
        raise RequestError("end", f"the range spans {(end - start) / timedelta(days=1):.1f} days; at most "
                           f"{max_days} days per request ({MAX_DAYS_ENV}) — split it into several")
    if bybit is not None:
        try:
            bybit.get_instrument(symbol=checked)
        except UnknownSymbolError as exc:
            raise RequestError("symbol", str(exc)) from None
    return checked, start, end


def touched_days(start: datetime, end: datetime, *, now: datetime) -> list[date]:
    """UTC days that [start, end) touches, within the date partitions (START_DATE .. today).

    A range starting mid-day includes that day; one ending exactly at midnight does not include
    the day that midnight begins.
    """
    first = max(start.astimezone(UTC).date(), date.fromisoformat(START_DATE))
    last = min((end.astimezone(UTC) - timedelta(microseconds=1)).date(), now.astimezone(UTC).date())
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
