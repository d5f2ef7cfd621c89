"""Typed Bybit v5 public-market client (a Dagster resource) on pybit's `HTTP` session.

It returns frozen dataclasses from `models.py`, retries transient faults with bounded
exponential backoff and jitter, fails fast on the ones that retrying cannot fix, validates
every candle, and never hands out a candle that has not closed yet.
"""

import logging
import os
import random
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import dagster as dg
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from pydantic import PrivateAttr

from kline_pipeline.models import (
    CANDLE_MS,
    Candle,
    Instrument,
    KlineWindow,
    from_ms,
    grid_ceil,
    grid_floor,
    to_ms,
)
from kline_pipeline.ratelimit import shared_limiter

MAINNET_URL = "https://api.bybit.com"
CATEGORIES = ("spot", "linear", "inverse")
INTERVAL_MS = {"5": CANDLE_MS, "15": 15 * 60_000, "30": 30 * 60_000, "60": 3_600_000, "240": 4 * 3_600_000,
               "720": 12 * 3_600_000, "D": 86_400_000}
"""Bybit's kline intervals this project reads: 5m for the raw candles, the rest to compare rollups."""
WINDOW_CANDLES = 1000
"""Bybit's maximum `limit`: one request per 1000 candles."""

# retCodes that mean "try again later": rate limit, server timeout, server error.
RETRYABLE_RET_CODES = frozenset({10006, 10000, 10016})


class BybitError(RuntimeError):
    """Base class of everything this client raises."""


class BybitUnavailableError(BybitError):
    """Transient faults did not stop within the retry budget."""


class BybitIpBanError(BybitError):
    """HTTP 403: Bybit has banned this IP for at least 10 minutes; retrying would extend it."""


class BybitRejectedError(BybitError, ValueError):
    """Bybit refused a parameter (retCode 10001 and friends): retrying cannot help."""


class UnknownSymbolError(BybitRejectedError):
    """The symbol is not listed in the configured category."""


class InvalidCandleError(BybitError, ValueError):
    """A candle broke a rule (grid, numbers, OHLC order); it names symbol, time and rule."""


def _resolve_category(category: str | None) -> str:
    value = category if category is not None else os.environ.get("BYBIT_CATEGORY") or "linear"
    if value not in CATEGORIES:
        raise ValueError(f"invalid Bybit category {value!r}: allowed are {', '.join(CATEGORIES)}")
    return value


def _resolve_base_url(base_url: str | None) -> str:
    value = base_url if base_url is not None else os.environ.get("BYBIT_BASE_URL") or MAINNET_URL
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"invalid BYBIT_BASE_URL {value!r}: expected an http:// or https:// URL")
    return value.rstrip("/")


def parse_candle(symbol: str, row: list[Any], *, step_ms: int = CANDLE_MS) -> Candle:
    """Map one `result.list` row to a Candle, enforcing the rules a real candle obeys."""
    try:
        start_ms = int(row[0])
        o, h, l, c, v, t = (str(x) for x in row[1:7])
        op, hi, lo, cl, vol, turn = (Decimal(x) for x in (o, h, l, c, v, t))
    except (ValueError, TypeError, IndexError, InvalidOperation):
        raise InvalidCandleError(f"{symbol}: malformed candle row {row!r}: expected 7 numeric fields") from None
    # Hot path (a year is 105,120 rows): one combined test; the rule is only named on failure.
    try:
        valid = (
            not start_ms % step_ms and lo > 0 and lo <= op <= hi and lo <= cl <= hi
            and vol >= 0 and turn >= 0 and hi.is_finite() and vol.is_finite() and turn.is_finite()
        )
    except InvalidOperation:  # NaN in an ordering comparison
        valid = False
    if not valid:
        raise InvalidCandleError(_broken_rule(symbol, start_ms, row, (op, hi, lo, cl, vol, turn), step_ms))
    return Candle(start_ms, o, h, l, c, v, t)


def _broken_rule(symbol: str, start_ms: int, row: list[Any], values: tuple[Decimal, ...], step_ms: int) -> str:
    """Name the first rule a candle breaks, with symbol and time (called only for bad rows)."""
    op, hi, lo, cl, vol, turn = values
    o, h, l, c, v, t = (str(x) for x in row[1:7])
    when = f"{symbol} candle at {from_ms(start_ms).isoformat()}" if start_ms >= 0 else f"{symbol} row {row!r}"
    if start_ms % step_ms:
        return f"{when}: start time is not on the {step_ms // 60_000}-minute grid"
    if not all(x.is_finite() for x in values):
        return f"{when}: non-finite number in {row!r}"
    if hi < lo:
        return f"{when}: high {h} is below low {l}"
    if lo > min(op, cl):
        return f"{when}: low {l} is above min(open {o}, close {c})"
    if hi < max(op, cl):
        return f"{when}: high {h} is below max(open {o}, close {c})"
    if lo <= 0:
        return f"{when}: low {l} is not a positive price"
    return f"{when}: negative volume {v} or turnover {t}"


class BybitClient(dg.ConfigurableResource):
    """Bybit v5 public market data: 5m klines and instruments.

    `base_url` / `category` left unset are read at run time from BYBIT_BASE_URL (default
    mainnet) and BYBIT_CATEGORY (default linear), so one resource serves every environment.
    """

    base_url: str | None = None
    category: str | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    requests_per_second: float = 20.0

    _session: HTTP | None = PrivateAttr(default=None)
    _requests_made: int = PrivateAttr(default=0)
    _retried: Counter = PrivateAttr(default_factory=Counter)

    @property
    def resolved_category(self) -> str:
        return _resolve_category(self.category)

    @property
    def resolved_base_url(self) -> str:
        return _resolve_base_url(self.base_url)

    @property
    def requests_made(self) -> int:
        """Requests sent by this resource instance (each attempt counts)."""
        return self._requests_made

    def retried_faults(self) -> dict[str, int]:
        """Transient faults this resource instance has retried so far, by cause (a copy), e.g.
        `{"HTTP 502": 3, "retCode 10006": 1}`. A fault that ended the retries is not counted."""
        return dict(self._retried)

    def log_retried_faults(self, log: logging.Logger, *, since: Mapping[str, int] | None = None) -> None:
        """Log the faults retried since the tally `since` (from `retried_faults()`; None: all).

        One WARNING line with the count and each cause when there were any, so a run's log shows
        what the exchange did even when every request finally succeeded; nothing otherwise.
        """
        delta = Counter(self._retried)
        delta.subtract(since or {})
        causes = {cause: n for cause, n in sorted(delta.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0}
        if causes:
            log.warning("Bybit: %d transient fault(s) retried: %s", sum(causes.values()),
                        ", ".join(f"{cause} x{n}" for cause, n in causes.items()))

    def _http(self) -> HTTP:
        if self._session is None:
            session = HTTP(testnet=False, timeout=self.timeout_seconds, max_retries=1)
            # pybit builds each URL from `endpoint` at call time, so this points it anywhere.
            session.endpoint = self.resolved_base_url
            # Retries are ours (pybit's 10006 path crashes on a past reset header); an empty
            # set must be assigned after construction because pybit treats it as "use defaults".
            session.retry_codes = set()
            self._session = session
        return self._session

    def _call(self, what: str, method: str, **params: Any) -> dict[str, Any]:
        """Send one public request with the shared rate limit and our retry rules."""
        limiter = shared_limiter(self.requests_per_second)
        cause = "no attempt made"
        kind = cause  # the cause without its message: what the tally counts
        for attempt in range(1, self.max_attempts + 1):
            limiter.acquire()
            self._requests_made += 1
            try:
                reply = getattr(self._http(), method)(**params)
            except InvalidRequestError as exc:
                if exc.status_code not in RETRYABLE_RET_CODES:
                    raise BybitRejectedError(
                        f"Bybit rejected {what}: {exc.message} (retCode {exc.status_code}); not retried"
                    ) from None
                cause, kind = f"retCode {exc.status_code} {exc.message}", f"retCode {exc.status_code}"
            except FailedRequestError as exc:
                if exc.status_code == 403:
                    raise BybitIpBanError(
                        f"Bybit answered HTTP 403 to {what}: the IP is rate-banned for at least "
                        "10 minutes; stopped at once (retrying would extend the ban)"
                    ) from None
                if exc.status_code == 409:
                    cause = kind = "a body that is not valid JSON"
                elif exc.status_code == 429 or exc.status_code >= 500:
                    cause = kind = f"HTTP {exc.status_code}"
                else:
                    raise BybitError(f"Bybit failed {what}: HTTP {exc.status_code} {exc.message}") from None
            except requests.Timeout:
                cause, kind = f"no answer within {self.timeout_seconds:g} s", "timeout"
            except requests.ConnectionError as exc:
                cause = kind = f"connection error ({type(exc).__name__})"
            else:
                if not isinstance(reply, dict) or not isinstance(reply.get("result"), dict):
                    cause = kind = "a reply without a result object"
                else:
                    return reply
            if attempt < self.max_attempts:
                self._retried[kind] += 1
                delay = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
                time.sleep(delay * random.uniform(0.5, 1.0))
        raise BybitUnavailableError(
            f"Bybit {what} failed after {self.max_attempts} attempts; last cause: {cause}"
        )

    def get_instrument(self, *, symbol: str) -> Instrument:
        """The symbol's listing in the configured category; UnknownSymbolError if it has none."""
        category = self.resolved_category
        reply = self._call(f"instruments-info for {symbol}", "get_instruments_info", category=category, symbol=symbol)
        rows = [r for r in reply["result"].get("list") or [] if r.get("symbol") == symbol]
        if not rows:
            raise UnknownSymbolError(f"symbol {symbol!r} is not listed on Bybit (category {category})")
        row = rows[0]
        launch_ms = row.get("launchTime")
        launch = from_ms(int(launch_ms)) if launch_ms not in (None, "", "0") else self._first_candle_time(symbol)
        return Instrument(symbol=symbol, category=category, status=str(row.get("status", "")), launch_time=launch)

    def _first_candle_time(self, symbol: str) -> datetime | None:
        # Spot instruments carry no launchTime: the oldest candle is the listing.
        reply = self._call(
            f"first candle of {symbol}", "get_kline",
            category=self.resolved_category, symbol=symbol, interval="5", start=0, limit=1,
        )
        rows = reply["result"].get("list") or []
        return from_ms(min(int(r[0]) for r in rows)) if rows else None

    def iter_kline_windows(
        self, *, symbol: str, start: datetime, end: datetime, now: datetime, interval: str = "5",
    ) -> Iterator[KlineWindow]:
        """Closed candles of `interval` (default 5m) opening in [start, end), one request per
        window of at most 1000.

        Each request carries both `start` and `end` spanning at most 1000 candles, so the
        answer cannot depend on which end Bybit truncates. Candles closing after `now` are
        dropped (Bybit includes the still-open one); rows are validated, de-duplicated and
        returned oldest first. Windows come in time order and cover the range without gaps.
        """
        if interval not in INTERVAL_MS:
            raise ValueError(f"invalid interval {interval!r}: allowed are {', '.join(INTERVAL_MS)}")
        step = INTERVAL_MS[interval]
        first = grid_ceil(to_ms(start), step)
        # Last candle that opens before `end` and has closed by `now`.
        last = min(grid_floor(to_ms(end) - 1, step), grid_floor(to_ms(now), step) - step)
        category = self.resolved_category
        window_start = first
        while window_start <= last:
            window_end = min(window_start + (WINDOW_CANDLES - 1) * step, last)
            reply = self._call(
                f"kline {symbol} {from_ms(window_start).isoformat()}..{from_ms(window_end).isoformat()}",
                "get_kline",
                category=category, symbol=symbol, interval=interval,
                start=window_start, end=window_end, limit=WINDOW_CANDLES,
            )
            by_start: dict[int, Candle] = {}
            for row in reply["result"].get("list") or []:
                candle = parse_candle(symbol, row, step_ms=step)
                if window_start <= candle.start_ms <= window_end:
                    by_start[candle.start_ms] = candle
            yield KlineWindow(window_start, window_end, tuple(by_start[k] for k in sorted(by_start)))
            window_start = window_end + step

    def fetch_klines(
        self, *, symbol: str, start: datetime, end: datetime, now: datetime, interval: str = "5",
    ) -> list[Candle]:
        """All closed candles of `interval` opening in [start, end), oldest first (see `iter_kline_windows`)."""
        windows = self.iter_kline_windows(symbol=symbol, start=start, end=end, now=now, interval=interval)
        return [c for w in windows for c in w.candles]
