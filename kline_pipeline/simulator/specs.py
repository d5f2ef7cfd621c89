"""Parsing of the command-line specs ``SYMBOL:DATE`` and ``SYMBOL:START/END[@HEAL]``.

Errors are ``ValueError`` messages that quote the offending text, so a CLI can
print them as-is.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import NamedTuple

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


class OutageSpec(NamedTuple):
    """One ``--outage``: no 5m candles of ``symbol`` opening in ``[start_ms, end_ms)``, until the
    exchange heals it (fills the candles in): at ``heals_at_ms`` (exchange time), or
    ``heals_after_ms`` after the simulator starts; neither: never."""

    symbol: str
    start_ms: int
    end_ms: int
    heals_at_ms: int | None = None
    heals_after_ms: int | None = None

    def heal_ms(self, started_ms: int) -> int | None:
        """The exchange time from which the candles are served, for a simulator started at ``started_ms``."""
        return started_ms + self.heals_after_ms if self.heals_after_ms is not None else self.heals_at_ms


_DELAY_RE = re.compile(r"\+(\d+)([smhd])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
OUTAGE_EXAMPLE = "[CATEGORY:]SYMBOL:2025-01-10T00:00Z/2025-01-10T06:00Z, optionally @2025-01-11T00:00Z or @+10m (heals)"


def parse_outage_spec(spec: str) -> OutageSpec:
    """``"BTCUSDT:2025-01-10T00:00Z/2025-01-10T06:00Z"`` -> the span, end exclusive; a suffix
    ``@TIME`` (a UTC time like START's) heals it at that exchange time, ``@+N`` with a unit s, m, h
    or d (``@+90s``, ``@+10m``) that long after the simulator starts."""
    example = "SYMBOL:2025-01-10T00:00Z/2025-01-10T06:00Z"
    outage, at, heal_text = spec.partition("@")
    symbol, span = _split_symbol(outage, "outage", example)
    start_text, sep, end_text = span.partition("/")
    if not sep or not start_text.strip() or not end_text.strip():
        raise ValueError(f"invalid outage spec {spec!r}: expected {OUTAGE_EXAMPLE}")
    start = parse_timestamp(start_text, what="outage start", context=f" in {spec!r}")
    end = parse_timestamp(end_text, what="outage end", context=f" in {spec!r}")
    if start >= end:
        raise ValueError(f"invalid outage spec {spec!r}: start {start_text!r} is not before end {end_text!r}")
    if not at:
        return OutageSpec(symbol, start, end)
    heal = heal_text.strip()
    if heal.startswith("+"):
        delay = _DELAY_RE.fullmatch(heal)
        if delay is None or int(delay.group(1)) == 0:
            raise ValueError(f"invalid heal delay {heal_text!r} in outage spec {spec!r}: expected + and a whole "
                             "number above 0 with a unit s, m, h or d, e.g. @+90s or @+10m (after the simulator starts)")
        return OutageSpec(symbol, start, end, heals_after_ms=int(delay.group(1)) * _UNIT_MS[delay.group(2)])
    if not heal:
        raise ValueError(f"invalid outage spec {spec!r}: nothing after '@': expected a heal time, e.g. "
                         f"{outage}@2025-01-11T00:00Z, or a delay, e.g. {outage}@+10m")
    heals_at = parse_timestamp(heal, what="heal time", context=f" in outage spec {spec!r}")
    if heals_at <= end:
        # The exchange fills in candles that exist: a heal by the outage's end would be no outage at all.
        raise ValueError(f"invalid outage spec {spec!r}: heal time {heal!r} is not after the outage end "
                         f"{end_text.strip()!r}")
    return OutageSpec(symbol, start, end, heals_at_ms=heals_at)
