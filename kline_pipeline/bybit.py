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

from kline_pipeline import clock
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
from kline_pipeline.partitions import CATEGORIES, DEFAULT_CATEGORY, market_name, split_market, validate_symbol
from kline_pipeline.ratelimit import shared_limiter

MAINNET_URL = "https://api.bybit.com"
INTERVAL_MS = {"5": CANDLE_MS, "15": 15 * 60_000, "30": 30 * 60_000, "60": 3_600_000, "240": 4 * 3_600_000,
               "720": 12 * 3_600_000, "D": 86_400_000}
"""Bybit's kline intervals this project reads: 5m for the raw candles, the rest to compare rollups."""
WINDOW_CANDLES = 1000
"""Bybit's maximum `limit`: one request per 1000 candles."""

# retCodes that mean "try again later": rate limit, server timeout (v3 10000, v5 5004), server
# error, IP rate limit (10018: waited out until its reset header, see `_limit_wait`).
RETRYABLE_RET_CODES = frozenset({10006, 10000, 10016, 5004, 10018})
IP_RATE_LIMIT = 10018
MAX_LIMIT_WAIT_SECONDS = 30.0
"""Longest single wait for a rate-limit reset; a header further ahead is waited in several attempts."""
STATUSES = ("Trading", "Delivering", "PreLaunch", "Closed")
"""Bybit's instrument statuses, in the order a symbol missing from the default (Trading) list is looked up."""
PROBE_START_MS = 1_262_304_000_000
"""2010-01-01, before any Bybit market: the spot listing probe's explicit start (0 may read as "not given")."""


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
    """The market of a bare symbol from the resource's `category` or BYBIT_CATEGORY: only linear.

    Either once switched every bare symbol to another market while ingest wrote its rows under the
    linear name (spot prices in linear rows); the market is now part of each symbol instead."""
    source = "category"
    if category is None:
        category, source = os.environ.get("BYBIT_CATEGORY") or DEFAULT_CATEGORY, "BYBIT_CATEGORY"
    if category == DEFAULT_CATEGORY:
        return category
    if category in CATEGORIES:
        raise ValueError(
            f"{source}={category} is no longer supported: the market is part of each symbol "
            f"(add {category}:BTCUSDT to keep {category} candles beside the linear ones); "
            f"only {DEFAULT_CATEGORY} (or unset) is allowed")
    raise ValueError(f"invalid Bybit category {category!r}: only {DEFAULT_CATEGORY} (or unset) is allowed; "
                     "name spot and inverse markets in the symbol (spot:BTCUSDT, inverse:BTCUSD)")


def _market(symbol: str, category: str | None) -> tuple[str, str, str]:
    """(category, Bybit's symbol, our market name) of `symbol`: its `spot:` / `inverse:` prefix
    names the market; a bare symbol is linear, unless a method call names another `category`
    explicitly (the returned market name then carries it)."""
    if ":" in symbol:
        validate_symbol(symbol)
        category, bare = split_market(symbol)
    elif category is not None:
        if category not in CATEGORIES:
            raise ValueError(f"invalid Bybit category {category!r}: allowed are {', '.join(CATEGORIES)}")
        bare = symbol
    else:
        category, bare = DEFAULT_CATEGORY, symbol
    return category, bare, market_name(category, bare)


def _resolve_base_url(base_url: str | None) -> str:
    value = base_url if base_url is not None else os.environ.get("BYBIT_BASE_URL") or MAINNET_URL
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"invalid BYBIT_BASE_URL {value!r}: expected an http:// or https:// URL")
    return value.rstrip("/")


def _ms_field(value: Any) -> datetime | None:
    """An epoch-ms string field of instruments-info; None when absent or "0" (Bybit's "none")."""
    return from_ms(int(value)) if value not in (None, "", "0") else None


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


def _limit_wait(headers: Mapping[str, str] | None) -> float | None:
    """Seconds until a rate limit resets, from the reply's own headers: X-Bapi-Limit-Reset-Timestamp
    minus Timenow, both on the exchange's clock, so a local clock that is off cannot shorten the
    wait. None when they are missing or unreadable (the ordinary backoff applies then)."""
    try:
        reset_ms = int((headers or {})["X-Bapi-Limit-Reset-Timestamp"])
        now_ms = int((headers or {})["Timenow"])
    except (KeyError, TypeError, ValueError):
        return None
    return min(MAX_LIMIT_WAIT_SECONDS, max(0.0, (reset_ms - now_ms) / 1000))


class BybitClient(dg.ConfigurableResource):
    """Bybit v5 public market data: 5m klines and instruments.

    `base_url` left unset is read at run time from BYBIT_BASE_URL (default mainnet), so one
    resource serves every environment. Every method takes a market name: `BTCUSDT` (linear),
    `spot:BTCUSDT`, `inverse:BTCUSD`. `category` (and BYBIT_CATEGORY) may only name linear, the
    market of a bare symbol: any other value is refused when the client is used, since the market
    belongs to the symbol (see partitions.py).
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
            # Headers too: `Timenow` is the exchange's time when a reply body carries no `time`.
            session = HTTP(testnet=False, timeout=self.timeout_seconds, max_retries=1, return_response_headers=True)
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
                answer = getattr(self._http(), method)(**params)
                reply, headers = (answer[0], answer[2]) if isinstance(answer, tuple) else (answer, None)
            except InvalidRequestError as exc:
                if exc.status_code not in RETRYABLE_RET_CODES:
                    raise BybitRejectedError(
                        f"Bybit rejected {what}: {exc.message} (retCode {exc.status_code}); not retried"
                    ) from None
                cause, kind = f"retCode {exc.status_code} {exc.message}", f"retCode {exc.status_code}"
                if exc.status_code == IP_RATE_LIMIT and attempt < self.max_attempts:
                    wait = _limit_wait(exc.resp_headers)
                    if wait:  # the reset header says exactly how long; no backoff on top (a reset
                        # already past falls back to the backoff below, so retries never spin).
                        # The limit is the IP's: every thread of the process waits, not only this one.
                        self._retried[kind] += 1
                        limiter.pause(wait)
                        continue
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
                    header_time = _int_or_none((headers or {}).get("Timenow"))
                    if header_time is not None:
                        reply[TIMENOW_KEY] = header_time
                    return reply
            if attempt < self.max_attempts:
                self._retried[kind] += 1
                delay = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
                time.sleep(delay * random.uniform(0.5, 1.0))
        raise BybitUnavailableError(
            f"Bybit {what} failed after {self.max_attempts} attempts; last cause: {cause}"
        )

    def get_instrument(self, *, symbol: str, category: str | None = None) -> Instrument:
        """The symbol's listing in `category` (default: the configured one), whatever its status;
        UnknownSymbolError if it has none.

        instruments-info lists only Trading symbols unless a status is asked for, so a symbol
        missing there is looked up as Delivering, PreLaunch and Closed in turn (one request each,
        only for such symbols): a delisted symbol's history can still be backfilled.
        """
        _resolve_category(self.category)  # refuses a non-linear `category` / BYBIT_CATEGORY before any request
        category, bare, market = _market(symbol, category)
        for status in (None, *STATUSES[1:]):
            params = {"category": category, "symbol": bare} | ({"status": status} if status else {})
            reply = self._call(f"instruments-info for {symbol}", "get_instruments_info", **params)
            rows = [r for r in reply["result"].get("list") or [] if r.get("symbol") == bare]
            if rows:
                break
        else:
            raise UnknownSymbolError(f"symbol {bare!r} is not listed on Bybit (category {category}) "
                                     f"in any status ({', '.join(STATUSES)})")
        row = rows[0]
        status = str(row.get("status", ""))
        launch = _ms_field(row.get("launchTime"))
        if launch is None:  # spot carries no launchTime: the oldest candle is the listing
            launch = self._first_candle_time(bare, category)
        delivery = _ms_field(row.get("deliveryTime"))  # "0" on a perpetual that is not being delisted
        if delivery is None and status == "Closed":  # spot carries no deliveryTime: its last candle ends it
            delivery = self._last_candle_end(bare, category)
        return Instrument(symbol=market, category=category, status=status, launch_time=launch,
                          delivery_time=delivery)

    def _first_candle_time(self, symbol: str, category: str) -> datetime | None:
        # An explicit early start: a 0 may be taken as "not given" and answer the LATEST candle,
        # which would make the listing "now" and skip all history without a word.
        reply = self._call(
            f"first candle of {symbol}", "get_kline",
            category=category, symbol=symbol, interval="5", start=PROBE_START_MS, limit=1,
        )
        rows = reply["result"].get("list") or []
        if not rows:
            return None
        first_ms = min(int(r[0]) for r in rows)
        exchange_ms = _reply_time(reply)
        if exchange_ms is None:
            exchange_ms = self.server_time_ms()
        # Nothing known of the exchange's clock: the newest candle by the local one may still be open.
        if exchange_ms is None:
            exchange_ms = to_ms(clock.utcnow()) - CANDLE_MS
        if first_ms + CANDLE_MS > exchange_ms:
            raise BybitError(
                f"the listing probe of {symbol} ({category}) answered the still-open candle at "
                f"{from_ms(first_ms).isoformat()}, not the first one: refusing to take the listing as now "
                "(it would skip all history); try again after this candle closes"
            )
        return from_ms(first_ms)

    def _last_candle_end(self, symbol: str, category: str) -> datetime | None:
        reply = self._call(f"last candle of {symbol}", "get_kline",
                           category=category, symbol=symbol, interval="5", limit=1)
        rows = reply["result"].get("list") or []
        return from_ms(max(int(r[0]) for r in rows) + CANDLE_MS) if rows else None

    def iter_kline_windows(
        self, *, symbol: str, start: datetime, end: datetime, now: datetime, interval: str = "5",
        category: str | None = None,
    ) -> Iterator[KlineWindow]:
        """Closed candles of `interval` (default 5m) opening in [start, end), one request per
        window of at most 1000.

        Each request carries both `start` and `end` spanning at most 1000 candles, so the
        answer cannot depend on which end Bybit truncates. Closed means closed by the
        exchange's clock: a candle closing after `now` or after the reply's own `time` is
        dropped (Bybit includes the still-open one, and a local clock ahead of Bybit's would
        take it for closed), and each window says up to where it is closed (`closed_until_ms`).
        Rows are validated, de-duplicated and returned oldest first. Windows come in time order
        and cover the range without gaps. `category` defaults to the configured one.
        """
        if interval not in INTERVAL_MS:
            raise ValueError(f"invalid interval {interval!r}: allowed are {', '.join(INTERVAL_MS)}")
        step = INTERVAL_MS[interval]
        first = grid_ceil(to_ms(start), step)
        # Last candle that opens before `end` and has closed by `now`.
        last = min(grid_floor(to_ms(end) - 1, step), grid_floor(to_ms(now), step) - step)
        _resolve_category(self.category)  # refuses a non-linear `category` / BYBIT_CATEGORY before any request
        category, bare, symbol = _market(symbol, category)
        window_start = first
        server_ms: int | None = None
        asked_server = False
        while window_start <= last:
            window_end = min(window_start + (WINDOW_CANDLES - 1) * step, last)
            reply = self._call(
                f"kline {symbol} {from_ms(window_start).isoformat()}..{from_ms(window_end).isoformat()}",
                "get_kline",
                category=category, symbol=bare, interval=interval,
                start=window_start, end=window_end, limit=WINDOW_CANDLES,
            )
            # The exchange's time of this answer: every candle opening at or after its grid floor
            # is still open there, whatever the local clock says.
            exchange_ms = _reply_time(reply)
            if exchange_ms is None:  # the body has no `time` and no `Timenow` header came: ask, once
                if not asked_server:
                    server_ms, asked_server = self.server_time_ms(), True
                exchange_ms = server_ms
            if exchange_ms is None:
                # Nothing known of the exchange's clock: never take the local one for it (it may be
                # ahead); the newest candle closed by the local clock is treated as still open.
                exchange_ms = to_ms(now) - step
            closed_until = min(window_end + step, grid_floor(exchange_ms, step))
            by_start: dict[int, Candle] = {}
            for row in reply["result"].get("list") or []:
                candle = parse_candle(symbol, row, step_ms=step)
                if window_start <= candle.start_ms < closed_until:
                    by_start[candle.start_ms] = candle
            yield KlineWindow(window_start, window_end, tuple(by_start[k] for k in sorted(by_start)),
                              closed_until_ms=max(closed_until, window_start))
            if closed_until <= window_end:
                return  # the rest is not closed yet by the exchange's clock
            window_start = window_end + step

    def server_time_ms(self) -> int | None:
        """The exchange's clock (epoch ms) from `/v5/market/time`; None if it cannot be read."""
        try:
            reply = self._call("server time", "get_server_time")
        except BybitError:
            return None
        result = reply.get("result") or {}
        nano = _int_or_none(result.get("timeNano"))
        if nano is not None:
            return nano // 1_000_000
        second = _int_or_none(result.get("timeSecond"))
        return second * 1000 if second is not None else _reply_time(reply)

    def fetch_klines(
        self, *, symbol: str, start: datetime, end: datetime, now: datetime, interval: str = "5",
        category: str | None = None,
    ) -> list[Candle]:
        """All closed candles of `interval` opening in [start, end), oldest first (see `iter_kline_windows`)."""
        windows = self.iter_kline_windows(symbol=symbol, start=start, end=end, now=now, interval=interval,
                                          category=category)
        return [c for w in windows for c in w.candles]


TIMENOW_KEY = "_timenow"
"""Where `_call` keeps a reply's `Timenow` header (the exchange's clock, epoch ms) in the reply."""


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reply_time(reply: Mapping[str, Any]) -> int | None:
    """The exchange's time (epoch ms) of a v5 reply: its `time`, else its `Timenow` header; None if
    it carries neither (the local clock is never taken for it)."""
    for key in ("time", TIMENOW_KEY):
        value = _int_or_none(reply.get(key))
        if value is not None:
            return value
    return None
