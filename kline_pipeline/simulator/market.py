"""Deterministic synthetic market data for the Bybit simulator.

The model has three properties the rest of the project relies on:

* **Random access.**  The 5-minute candle opening at ``t`` is a pure function of
  ``(symbol, t)``: the price at every 5-minute grid point is a few sines of time
  (the slow "trend") times a hash-based wiggle.  There is no cumulative random
  walk, so candle ``t`` can be produced without generating anything before it and
  two simulator instances always agree.
* **Exact integers.**  Prices are integers in 0.01 units, volumes in 0.001 units
  and turnover in 0.0001 units; aggregation is integer max/min/sum, so a correct
  rollup in the client (e.g. with ``Decimal`` or SQL ``numeric``) reproduces the
  simulator's higher intervals exactly.
* **Continuity.**  Candle ``t`` opens at the grid price of ``t`` and closes at the
  grid price of ``t + 5m``, i.e. at the next candle's open.

Candles are represented internally as tuples
``(open_ms, open, high, low, close, volume, turnover)`` of ints.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FIVE_MIN_MS = 300_000
DAY_MS = 86_400_000

# Supported kline intervals.  Every one divides a UTC day, so buckets aligned to
# the epoch are also aligned to UTC midnight.  Bybit's 1m/3m (finer than the
# simulator's base series) and W/M (calendar-aligned) are deliberately absent.
INTERVAL_MS: dict[str, int] = {
    "5": FIVE_MIN_MS,
    "15": 15 * 60_000,
    "30": 30 * 60_000,
    "60": 60 * 60_000,
    "120": 120 * 60_000,
    "240": 240 * 60_000,
    "360": 360 * 60_000,
    "720": 720 * 60_000,
    "D": DAY_MS,
}

Candle = tuple[int, int, int, int, int, int, int]
"""(open_ms, open, high, low, close, volume, turnover) in integer units."""

_MASK64 = (1 << 64) - 1
_TWO_PI = 2.0 * math.pi
_NOISE = 0.004  # +-0.2 % wiggle around the smooth trend at each grid point
_WICK = 0.0015  # wicks reach at most 0.15 % beyond the body

# Known symbols get a realistic price level (in 0.01 units); others get one
# derived from their hash, always well below BTC.
_BASE_PRICE: dict[str, int] = {"BTCUSDT": 4_000_000, "ETHUSDT": 200_000, "SOLUSDT": 10_000}

# Intraday volume profile (busier around the US session), precomputed per
# 5-minute slot so the hot loop does a list lookup instead of a sine.
_VOLUME_PROFILE: tuple[float, ...] = tuple(
    1.0 + 0.5 * math.sin(_TWO_PI * (slot / 288.0) - 1.2) for slot in range(288)
)


def _mix64(x: int) -> int:
    """SplitMix64 finaliser: a cheap, well-distributed 64-bit integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def align_down(ms: int, step: int) -> int:
    """Largest multiple of ``step`` that is <= ``ms``."""
    return ms - ms % step


def align_up(ms: int, step: int) -> int:
    """Smallest multiple of ``step`` that is >= ``ms``."""
    return -((-ms) // step) * step


def format_price(units: int) -> str:
    """0.01 units -> ``"42123.57"``."""
    return f"{units // 100}.{units % 100:02d}"


def format_volume(units: int) -> str:
    """0.001 units -> ``"12.345"``."""
    return f"{units // 1000}.{units % 1000:03d}"


def format_turnover(units: int) -> str:
    """0.0001 units -> ``"520123.4567"``."""
    return f"{units // 10000}.{units % 10000:04d}"


def to_row(candle: Candle) -> list[str]:
    """Bybit kline row: ``[startTime, open, high, low, close, volume, turnover]``, all strings."""
    t, o, h, l, c, v, q = candle
    return [str(t), format_price(o), format_price(h), format_price(l), format_price(c),
            format_volume(v), format_turnover(q)]


@dataclass(frozen=True)
class _SymbolModel:
    """Per-symbol constants of the price/volume model, all derived from the symbol name."""

    seed: int
    base_price: float  # 0.01 units
    base_volume: float  # 0.001 units per 5 minutes
    amps: tuple[float, ...]
    omegas: tuple[float, ...]  # radians per ms
    phases: tuple[float, ...]


CATEGORIES = ("spot", "linear", "inverse")


def split_key(key: str) -> tuple[str | None, str]:
    """``"spot:BTCUSDT"`` -> ``("spot", "BTCUSDT")``; a plain ``"BTCUSDT"`` -> ``(None, "BTCUSDT")``
    (listed in every category, one series: how the simulator always behaved)."""
    head, sep, rest = key.partition(":")
    return (head, rest) if sep and head in CATEGORIES else (None, key)


def _make_model(key: str) -> _SymbolModel:
    # zlib.crc32 rather than hash(): str hashing is randomised per process and
    # the series must be identical across processes and runs. The seed is the whole key, so
    # spot:BTCUSDT trades at other prices than BTCUSDT (a test can tell the markets apart);
    # the price level comes from the bare symbol.
    seed = _mix64(zlib.crc32(key.encode()))
    base = _BASE_PRICE.get(split_key(key)[1], 50 + seed % 50_000)
    # Periods from ~1.1 years down to ~7 hours: a long cycle, a "month" swing,
    # a few-day swing and an intraday one.  Phases differ per symbol.
    periods_days = (400.0, 23.0, 3.7, 0.29)
    amps = (0.45, 0.08, 0.025, 0.006)
    phases = tuple(((_mix64(seed + i) >> 11) / float(1 << 53)) * _TWO_PI for i in range(4))
    omegas = tuple(_TWO_PI / (p * DAY_MS) for p in periods_days)
    # Aim for roughly 500k quote units of turnover per 5 minutes whatever the price.
    base_volume = 5e10 / base
    return _SymbolModel(seed, float(base), base_volume, amps, omegas, phases)


class MarketModel:
    """Deterministic 5-minute series per symbol, outages, and rollups to higher intervals.

    Thread-safe: the outage table is replaced copy-on-write, so readers never lock.
    """

    def __init__(self, instruments: Mapping[str, int], delistings: Mapping[str, int] | None = None) -> None:
        # Keys are "SYMBOL" (every category) or "category:SYMBOL" (that category only, its own series).
        self.instruments: dict[str, int] = dict(instruments)
        self._models = {sym: _make_model(sym) for sym in self.instruments}
        self.deliveries: dict[str, int] = {}
        for key, delivery_ms in (delistings or {}).items():
            self.delist(key, delivery_ms)
        self._outages: dict[str, tuple[tuple[int, int], ...]] = {}
        self._healing: dict[str, tuple[tuple[int, int, int], ...]] = {}
        """Outages the exchange fills later: (start, end, heals_at) per symbol."""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ outages
    def add_outage(self, symbol: str, start_ms: int, end_ms: int, heals_at_ms: int | None = None) -> None:
        """Remove every 5m candle of ``symbol`` whose open time is in ``[start_ms, end_ms)``; with
        ``heals_at_ms``, only until then: from that (simulator) time on the exchange serves them
        (it filled the outage later)."""
        if symbol not in self.instruments:
            raise ValueError(f"unknown symbol for outage: {symbol!r}")
        if start_ms >= end_ms:
            raise ValueError(f"outage start {start_ms} must be before end {end_ms}")
        with self._lock:
            if heals_at_ms is not None:
                self._healing[symbol] = (*self._healing.get(symbol, ()), (int(start_ms), int(end_ms), int(heals_at_ms)))
                return
            self._outages[symbol] = _merged([*self._outages.get(symbol, ()), (int(start_ms), int(end_ms))])

    def clear_outages(self, symbol: str) -> None:
        """Forget the outages of ``symbol``: the exchange now serves those candles (late data)."""
        with self._lock:
            self._outages.pop(symbol, None)
            self._healing.pop(symbol, None)

    def outages(self, symbol: str, at_ms: int | None = None) -> tuple[tuple[int, int], ...]:
        """Merged outage spans of ``symbol`` at simulator time ``at_ms``, sorted (``None``: healing
        outages count as not healed yet)."""
        healing = [(s, e) for s, e, heal in self._healing.get(symbol, ()) if at_ms is None or at_ms < heal]
        return _merged([*self._outages.get(symbol, ()), *healing]) if healing else self._outages.get(symbol, ())

    def add_instrument(self, key: str, launch_ms: int) -> None:
        """List ``key`` ("SYMBOL" or "category:SYMBOL") from ``launch_ms`` on (a test's extra market)."""
        split_key(key)
        self._models[key] = _make_model(key)
        self.instruments[key] = int(launch_ms)

    def delist(self, key: str, delivery_ms: int) -> None:
        """``key`` stops trading at ``delivery_ms`` (Bybit's deliveryTime): no candle opens at or after it."""
        if key not in self.instruments:
            raise ValueError(f"unknown symbol to delist: {key!r} (listed: {', '.join(sorted(self.instruments))})")
        if delivery_ms <= self.instruments[key]:
            raise ValueError(f"delisting of {key!r} at {delivery_ms} ms is not after its listing {self.instruments[key]} ms")
        self.deliveries[key] = int(delivery_ms)

    def cancel_delisting(self, key: str) -> None:
        """``key``'s announced delisting is called off: it trades on (deliveryTime "0" again)."""
        if key not in self.deliveries:
            raise ValueError(f"no delisting of {key!r} to cancel")
        del self.deliveries[key]

    def resolve(self, category: str, symbol: str) -> str | None:
        """The key serving ``symbol`` in ``category``: its own ``category:SYMBOL`` first, else a plain one."""
        own = f"{category}:{symbol}"
        if own in self.instruments:
            return own
        return symbol if symbol in self.instruments else None

    def keys_in(self, category: str) -> dict[str, str]:
        """Symbol -> key of every instrument listed in ``category``."""
        symbols = {symbol for cat, symbol in map(split_key, self.instruments) if cat in (None, category)}
        return {symbol: key for symbol in sorted(symbols) if (key := self.resolve(category, symbol))}

    def status(self, key: str, now_ms: int) -> str:
        """Bybit's instrument status at ``now_ms``: PreLaunch before the listing, Delivering in the
        day before the delisting (settling), Closed from it on, else Trading."""
        delivery = self.deliveries.get(key)
        if now_ms < self.instruments[key]:
            return "PreLaunch"
        if delivery is not None and now_ms >= delivery:
            return "Closed"
        if delivery is not None and now_ms >= delivery - DAY_MS:
            return "Delivering"
        return "Trading"

    def last_open(self, symbol: str) -> int | None:
        """Open time of the last 5m candle before the delisting, None while it trades."""
        delivery = self.deliveries.get(symbol)
        return None if delivery is None else align_up(delivery, FIVE_MIN_MS) - FIVE_MIN_MS

    def first_open(self, symbol: str) -> int:
        """Open time of the first 5m candle: the one containing the launch time."""
        return align_down(self.instruments[symbol], FIVE_MIN_MS)

    def _present_runs(self, symbol: str, lo5: int, hi5: int, at_ms: int | None = None) -> list[tuple[int, int]]:
        """Maximal runs ``(a, b)`` (inclusive, 5m-aligned) of present candle opens in ``[lo5, hi5]`` at ``at_ms``."""
        runs: list[tuple[int, int]] = []
        cur = lo5
        for s, e in self.outages(symbol, at_ms):
            first_absent, last_absent = align_up(s, FIVE_MIN_MS), align_down(e - 1, FIVE_MIN_MS)
            if first_absent > last_absent or last_absent < cur:
                continue  # too short to hide a candle, or already behind us
            if first_absent > hi5:
                break
            if first_absent > cur:
                runs.append((cur, first_absent - FIVE_MIN_MS))
            cur = max(cur, last_absent + FIVE_MIN_MS)
        if cur <= hi5:
            runs.append((cur, hi5))
        return runs

    # --------------------------------------------------------------- generation
    def _generate(self, symbol: str, a: int, b: int) -> list[Candle]:
        """Final 5m candles for every grid open in ``[a, b]`` (no presence checks)."""
        m = self._models[symbol]
        k0 = a // FIVE_MIN_MS
        n = (b - a) // FIVE_MIN_MS + 1
        seed, base = m.seed, m.base_price
        (a1, a2, a3, a4), (w1, w2, w3, w4), (p1, p2, p3, p4) = m.amps, m.omegas, m.phases
        sin, exp, mix = math.sin, math.exp, _mix64
        hashes = [mix(seed ^ k) for k in range(k0, k0 + n + 1)]
        prices: list[int] = []
        for i, h in enumerate(hashes):
            t = (k0 + i) * FIVE_MIN_MS
            trend = a1 * sin(w1 * t + p1) + a2 * sin(w2 * t + p2) + a3 * sin(w3 * t + p3) + a4 * sin(w4 * t + p4)
            noise = ((h & 0xFFFFF) / 1048575.0 - 0.5) * _NOISE
            prices.append(max(1, int(base * exp(trend) * (1.0 + noise) + 0.5)))
        out: list[Candle] = []
        base_vol, profile = m.base_volume, _VOLUME_PROFILE
        for i in range(n):
            h = hashes[i]
            o, c = prices[i], prices[i + 1]  # continuity: close == next open
            hi = (o if o > c else c)
            lo = (c if o > c else o)
            hi += int(hi * _WICK * ((h >> 20) & 0xFFFF) / 65535.0)
            lo -= int(lo * _WICK * ((h >> 36) & 0xFFFF) / 65535.0)
            if lo < 1:
                lo = 1
            k = k0 + i
            vol = int(base_vol * (0.25 + 1.5 * ((h >> 52) / 4096.0)) * profile[k % 288])
            if vol < 1:
                vol = 1  # keeps partial candles distinguishable from final ones
            turnover = vol * ((hi + lo + c) // 3) // 10  # 0.001 * 0.01 = 0.00001 -> 0.0001 units
            out.append((k * FIVE_MIN_MS, o, hi, lo, c, vol, turnover))
        return out

    def _partial(self, symbol: str, final: Candle, now_ms: int) -> Candle:
        """The still-open candle as seen at ``now_ms``: close is the current price, volume pro rata."""
        m = self._models[symbol]
        t0, o, hi_f, lo_f, c_f, vol_f, turn_f = final
        elapsed = now_ms - t0  # 0 <= elapsed < 5m
        k = t0 // FIVE_MIN_MS
        # Current price: smooth trend at 'now', wiggle interpolated between the
        # two grid points, so the price path is continuous inside the candle.
        n0 = ((_mix64(m.seed ^ k) & 0xFFFFF) / 1048575.0 - 0.5) * _NOISE
        n1 = ((_mix64(m.seed ^ (k + 1)) & 0xFFFFF) / 1048575.0 - 0.5) * _NOISE
        noise = n0 + (n1 - n0) * (elapsed / FIVE_MIN_MS)
        trend = sum(a * math.sin(w * now_ms + p) for a, w, p in zip(m.amps, m.omegas, m.phases))
        c = max(1, int(m.base_price * math.exp(trend) * (1.0 + noise) + 0.5))
        # Wicks grow with elapsed time; bounds keep low <= min(o, c) <= max(o, c) <= high.
        up = (hi_f - max(o, c_f)) * elapsed // FIVE_MIN_MS
        down = (min(o, c_f) - lo_f) * elapsed // FIVE_MIN_MS
        hi = max(o, c) + up
        lo = max(1, min(o, c) - down)
        return (t0, o, hi, lo, c, vol_f * elapsed // FIVE_MIN_MS, turn_f * elapsed // FIVE_MIN_MS)

    # ---------------------------------------------------------------- selection
    def _select(self, symbol: str, step: int, lo_b: int, hi_b: int, cap5: int,
                limit: int | None, newest: bool, now_ms: int | None) -> list[Candle]:
        """Candles (oldest first) of the present buckets with open in ``[lo_b, hi_b]``.

        ``cap5`` is the last 5m open that may contribute; ``limit`` keeps the
        newest (``newest=True``) or oldest buckets; a 5m candle still open at
        ``now_ms`` contributes its partial values.
        """
        lo5 = max(lo_b, self.first_open(symbol))
        hi5 = min(hi_b + step - FIVE_MIN_MS, cap5)
        last_open = self.last_open(symbol)
        if last_open is not None:
            hi5 = min(hi5, last_open)  # nothing trades after the delisting
        if lo5 > hi5:
            return []
        runs = self._present_runs(symbol, lo5, hi5, now_ms)
        buckets = _pick_buckets(runs, step, limit, newest)
        if not buckets:
            return []
        span_lo, span_hi = max(buckets[0], lo5), min(buckets[-1] + step - FIVE_MIN_MS, hi5)
        candles: list[Candle] = []
        for a, b in runs:
            a, b = max(a, span_lo), min(b, span_hi)
            if a <= b:
                candles.extend(self._generate(symbol, a, b))
        if now_ms is not None and candles and candles[-1][0] + FIVE_MIN_MS > now_ms:
            candles[-1] = self._partial(symbol, candles[-1], now_ms)
        return candles if step == FIVE_MIN_MS else rollup(candles, step)

    def kline(self, symbol: str, interval: str, start: int | None, end: int | None,
              limit: int, now_ms: int) -> list[Candle]:
        """What ``/v5/market/kline`` returns, NEWEST first.

        Bounds are inclusive: the bucket containing ``start`` and buckets opening
        at or before ``end``.  Only buckets opening at or before ``now_ms`` exist
        and the one still open is partial.  With both ``start`` and ``end`` and
        more than ``limit`` buckets in range, the NEWEST ``limit`` are returned
        (sources disagree on this; newest is what Bybit does for ``end`` alone,
        and a client paging backwards by ``end`` is correct either way); with
        ``start`` only, the oldest ``limit`` from ``start``.
        """
        step = INTERVAL_MS[interval]
        upper = now_ms if end is None else min(end, now_ms)
        hi_b = align_down(upper, step)
        lo_b = align_down(start if start is not None else self.first_open(symbol), step)
        if lo_b > hi_b:
            return []
        newest = not (start is not None and end is None)
        rows = self._select(symbol, step, lo_b, hi_b, align_down(now_ms, FIVE_MIN_MS), limit, newest, now_ms)
        rows.reverse()
        return rows

    def candles(self, symbol: str, start_ms: int, end_ms: int, interval: str = "5") -> list[Candle]:
        """Final candles (oldest first) with open time in ``[start_ms, end_ms)``; no 'now' cut-off."""
        step = INTERVAL_MS[interval]
        lo_b, hi_b = align_up(start_ms, step), align_down(end_ms - 1, step)
        if lo_b > hi_b:
            return []
        return self._select(symbol, step, lo_b, hi_b, hi_b + step - FIVE_MIN_MS, None, False, None)


def _merged(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, overlapping spans merged, so _present_runs can walk them in one pass."""
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return tuple(merged)


def _pick_buckets(runs: list[tuple[int, int]], step: int, limit: int | None, newest: bool) -> list[int]:
    """Ascending bucket opens touched by ``runs``, keeping at most ``limit`` from the chosen end."""
    picked: list[int] = []
    ordered = reversed(runs) if newest else iter(runs)
    for a, b in ordered:
        first, last = align_down(a, step), align_down(b, step)
        if newest:
            bucket_range = range(last, first - 1, -step)
        else:
            bucket_range = range(first, last + 1, step)
        for bucket in bucket_range:
            if limit is not None and len(picked) >= limit:
                break
            if not picked or picked[-1] != bucket:  # adjacent runs may share a bucket
                picked.append(bucket)
        if limit is not None and len(picked) >= limit:
            break
    if newest:
        picked.reverse()
    return picked


def rollup(candles: Iterable[Candle], step: int) -> list[Candle]:
    """Aggregate ascending 5m candles into ``step`` buckets aligned to UTC midnight."""
    out: list[Candle] = []
    cur: list[int] | None = None
    for t, o, h, l, c, v, q in candles:
        bucket = t - t % step
        if cur is not None and cur[0] == bucket:
            if h > cur[2]:
                cur[2] = h
            if l < cur[3]:
                cur[3] = l
            cur[4] = c
            cur[5] += v
            cur[6] += q
        else:
            if cur is not None:
                out.append(tuple(cur))  # type: ignore[arg-type]
            cur = [bucket, o, h, l, c, v, q]
    if cur is not None:
        out.append(tuple(cur))  # type: ignore[arg-type]
    return out
