"""Parsing of the command-line specs ``SYMBOL:DATE`` and ``SYMBOL:START/END``.

Errors are ``ValueError`` messages that quote the offending text, so a CLI can
print them as-is.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .market import CATEGORIES

_SYMBOL_RE = re.compile(r"[A-Z0-9]{2,30}")


def parse_timestamp(text: str, *, what: str = "timestamp", context: str = "") -> int:
    """ISO-8601 date or date-time (naive means UTC) or epoch milliseconds -> epoch ms."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"invalid {what} {text!r}{context}: expected e.g. 2025-01-15, 2025-01-15T08:00:00Z or epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    # timedelta arithmetic keeps it exact (timestamp() goes through a float).
    delta = parsed - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _split_symbol(spec: str, kind: str, example: str) -> tuple[str, str]:
    """``[CATEGORY:]SYMBOL:REST`` -> (key, rest); the key keeps a category prefix ("spot:BTCUSDT")."""
    prefix = ""
    head, sep, tail = spec.partition(":")
    if sep and head.strip().lower() in CATEGORIES:
        prefix, spec = head.strip().lower() + ":", tail
    symbol, sep, rest = spec.partition(":")
    symbol = symbol.strip()
    if not sep or not rest.strip():
        raise ValueError(f"invalid {kind} spec {spec!r}: expected {example}")
    if not _SYMBOL_RE.fullmatch(symbol):
        raise ValueError(f"invalid symbol {symbol!r} in {kind} spec {spec!r}: expected uppercase letters/digits")
    return prefix + symbol, rest


def parse_instrument_spec(spec: str) -> tuple[str, int]:
    """``"NEWUSDT:2025-01-15"`` or ``"NEWUSDT:2025-01-15T08:00:00Z"`` -> ``(symbol, launch_ms)``;
    ``"spot:NEWUSDT:2025-01-15"`` lists it in that category only -> ``("spot:NEWUSDT", launch_ms)``."""
    symbol, when = _split_symbol(spec, "instrument",
                                 "[CATEGORY:]SYMBOL:2025-01-15 or [CATEGORY:]SYMBOL:2025-01-15T08:00:00Z")
    return symbol, parse_timestamp(when, what="launch time", context=f" in instrument spec {spec!r}")


def parse_delisting_spec(spec: str) -> tuple[str, int]:
    """``"LUNAUSDT:2022-05-13"`` (or ``"spot:LUNAUSDT:..."``) -> ``(key, delivery_ms)``: the moment it stops trading."""
    symbol, when = _split_symbol(spec, "delisting", "[CATEGORY:]SYMBOL:2022-05-13 or [CATEGORY:]SYMBOL:2022-05-13T08:00Z")
    return symbol, parse_timestamp(when, what="delisting time", context=f" in delisting spec {spec!r}")


def parse_outage_spec(spec: str) -> tuple[str, int, int]:
    """``"BTCUSDT:2025-01-10T00:00Z/2025-01-10T06:00Z"`` -> ``(symbol, start_ms, end_ms)``, end exclusive."""
    example = "SYMBOL:2025-01-10T00:00Z/2025-01-10T06:00Z"
    symbol, span = _split_symbol(spec, "outage", example)
    start_text, sep, end_text = span.partition("/")
    if not sep or not start_text.strip() or not end_text.strip():
        raise ValueError(f"invalid outage spec {spec!r}: expected {example}")
    start = parse_timestamp(start_text, what="outage start", context=f" in {spec!r}")
    end = parse_timestamp(end_text, what="outage end", context=f" in {spec!r}")
    if start >= end:
        raise ValueError(f"invalid outage spec {spec!r}: start {start_text!r} is not before end {end_text!r}")
    return symbol, start, end
