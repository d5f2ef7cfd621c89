"""The one partitions object shared by assets, checks, sensors and schedules.

Keys look like `2025-01-01|BTCUSDT` (Dagster orders the dimensions by name: date, then symbol).

The symbol dimension names a MARKET: the market (Bybit's category) is part of a candle's
identity, so spot and inverse markets carry it as a prefix, `spot:BTCUSDT`, `inverse:BTCUSD`; the
default market, linear, has none (`BTCUSDT`), so its keys and rows stay what they always were.
The same name is the `symbol` of every table row (with the category also in a `category` column).
"""

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

import dagster as dg

DEFAULT_START_DATE = "2020-01-01"
"""Bybit's USDT perpetuals start in 2020; earlier days would only be empty pre-listing partitions."""

# The partitions' first day is part of the definitions' shape (not a resource), so it is read
# when the code location loads. Days before a symbol's listing are materialised empty and cheap.
START_DATE = os.environ.get("KLINE_START_DATE", DEFAULT_START_DATE)

SYMBOL_PATTERN = re.compile(r"^(?:(?:spot|inverse):)?[A-Z0-9]{2,30}$")
CATEGORIES = ("linear", "spot", "inverse")
DEFAULT_CATEGORY = "linear"
"""The market of a symbol written without a prefix."""

SYMBOLS_PARTITIONS_NAME = "symbols"
"""The dynamic partitions of symbols, by name: what the instance's partition calls take (typed `str`,
where `symbols_partitions.name` is `str | None`)."""
symbols_partitions = dg.DynamicPartitionsDefinition(name=SYMBOLS_PARTITIONS_NAME)
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, end_offset=1, timezone="UTC")
kline_partitions = dg.MultiPartitionsDefinition({"date": daily_partitions, "symbol": symbols_partitions})


def validate_symbol(symbol: object) -> str:
    """Return `symbol` (a market: `BTCUSDT`, `spot:BTCUSDT`, `inverse:BTCUSD`) if it is well formed,
    else raise a ValueError naming it and what is allowed."""
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        hint = ""
        if isinstance(symbol, str) and symbol.startswith("linear:"):
            hint = f"; linear is the default market: write {symbol.removeprefix('linear:')!r}"
        raise ValueError(
            f"invalid symbol {symbol!r}: symbols are 2-30 characters of A-Z and 0-9 (e.g. BTCUSDT), "
            f"prefixed spot: or inverse: for those markets (e.g. spot:BTCUSDT){hint}"
        )
    return symbol


def split_market(symbol: str) -> tuple[str, str]:
    """`"spot:BTCUSDT"` -> ("spot", "BTCUSDT"); `"BTCUSDT"` -> ("linear", "BTCUSDT")."""
    head, sep, rest = symbol.partition(":")
    return (head, rest) if sep else (DEFAULT_CATEGORY, symbol)


def market_name(category: str, symbol: str) -> str:
    """Inverse of `split_market`: the name of `symbol` on `category` (no prefix for linear)."""
    if category not in CATEGORIES:
        raise ValueError(f"invalid Bybit category {category!r}: allowed are {', '.join(CATEGORIES)}")
    return symbol if category == DEFAULT_CATEGORY else f"{category}:{symbol}"


def valid_symbols(symbols: Iterable[str]) -> list[str]:
    """The symbols that pass `validate_symbol`; a key added by hand in the UI (e.g. `btcusdt`) may not."""
    return [s for s in symbols if isinstance(s, str) and SYMBOL_PATTERN.fullmatch(s)]


def split_partition_key(key: str) -> tuple[date, str]:
    """`"2025-01-01|BTCUSDT"` -> (date(2025, 1, 1), "BTCUSDT"), validating both parts."""
    day_text, sep, symbol = key.partition("|")
    if not sep:
        raise ValueError(f"invalid partition key {key!r}: expected 'YYYY-MM-DD|SYMBOL'")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise ValueError(f"invalid partition key {key!r}: {day_text!r} is not a YYYY-MM-DD date") from None
    return day, validate_symbol(symbol)


def partition_key(day: date, symbol: str) -> str:
    """Inverse of `split_partition_key`."""
    return f"{day.isoformat()}|{symbol}"


def days_by_symbol(keys: Iterable[str]) -> dict[str, list[date]]:
    """Group partition keys by symbol, each symbol's days sorted and unique."""
    grouped: dict[str, set[date]] = defaultdict(set)
    for key in keys:
        day, symbol = split_partition_key(key)
        grouped[symbol].add(day)
    return {symbol: sorted(days) for symbol, days in sorted(grouped.items())}


def contiguous_runs(days: Sequence[date]) -> list[list[date]]:
    """Split sorted days into runs of consecutive days (each run is fetched in one sweep)."""
    runs: list[list[date]] = []
    for day in days:
        if runs and runs[-1][-1] + timedelta(days=1) == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs
