"""The check predicates, pure functions of `Facts` and one partition key.

Each returns an `Outcome`; `specs.py` turns outcomes into Dagster check evaluations. A check
that reports what another already reports is not kept: `continuous_with_previous_day` (is the
previous day's 23:55 candle stored?) was exactly the previous day's own `no_missing_candles`,
and raised a false ERROR on the first day of every backfill whose previous day was never
requested, so it was removed.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import dagster as dg

from kline_pipeline.bybit import BybitClient
from kline_pipeline.checks.facts import Facts
from kline_pipeline.gaps import DELISTED, MISSING, NOT_LISTED, OUTAGE
from kline_pipeline.ingest import DAY, day_start
from kline_pipeline.models import CANDLE_MS, from_ms, to_ms
from kline_pipeline.partitions import split_partition_key
from kline_pipeline.rollups import Rollup
from kline_pipeline.event_writes import Metadata

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN

FRESHNESS_TOLERANCE = timedelta(minutes=10)
"""The newest candle may be one candle plus this old (15 minutes) before candles_fresh fails."""
STALE_ERROR_AFTER = timedelta(hours=1)
"""Up to this age a stale latest day fails with WARN (a missed tick or two); beyond it, ERROR."""


@dataclass(frozen=True)
class Outcome:
    passed: bool
    severity: dg.AssetCheckSeverity = ERROR
    metadata: Metadata = field(default_factory=dict)

    @property
    def state(self) -> str:
        """`passed`, `WARN` or `ERROR`: what a change of freshness is judged by."""
        return "passed" if self.passed else self.severity.value


Evaluator = Callable[[Facts, str], Outcome]


def no_missing_candles(facts: Facts, key: str) -> Outcome:
    """Every expected 5m candle of the day is stored: holes explained by a recorded exchange
    outage fail with WARN, unexplained holes with ERROR; days before listing and after a
    delisting pass (nothing can trade there; the metadata says "delisted")."""
    report = facts.gaps(key)
    totals = report.totals
    metadata: Metadata = {
        "expected": report.expected, "present": report.present, "missing": totals[MISSING],
        "exchange_outage": totals[OUTAGE], "not_listed": totals[NOT_LISTED],
        "gaps": dg.MetadataValue.md(report.markdown()),
    }
    if report.delisting is not None:
        metadata.update(delisted=totals[DELISTED], delisting=report.delisting.isoformat())
    if totals[MISSING]:
        return Outcome(False, ERROR, metadata)
    if totals[OUTAGE]:
        return Outcome(False, WARN, metadata)
    return Outcome(True, metadata=metadata)


def valid_ohlcv(facts: Facts, key: str) -> Outcome:
    """Every stored candle of the day is on the grid, closed, positive, with low ≤ open/close ≤ high
    and non-negative volume and turnover."""
    rows = facts.violations(key)
    metadata: Metadata = {"violations": sum(v.candles for v in rows)}
    metadata.update({f"rule: {v.rule}": f"{v.candles} candles, first at {v.first_candle.isoformat()}" for v in rows})
    return Outcome(not rows, ERROR, metadata)


def candles_fresh(facts: Facts, key: str) -> Outcome:
    """On the latest day: the newest stored candle closed at most 15 minutes ago and the symbol's
    last live tick succeeded; stale up to an hour fails with WARN, longer (or no candle) with
    ERROR, and a failed tick's error is in the metadata. Per symbol, unlike Dagster's asset-level
    freshness. Earlier days pass: their candles are final once the day has closed; so does the
    latest day of a delisted symbol (nothing trades any more: "delisted" in the metadata)."""
    day, symbol = split_partition_key(key)
    now = facts.now
    if day != now.date():
        return Outcome(True, metadata={"applies_to": "the latest day only", "day_closed": (day_start(day) + DAY).isoformat()})
    delisting = facts.delisting(symbol)
    if delisting is not None and delisting <= now:
        return Outcome(True, metadata={"delisted": delisting.isoformat(),
                                       "reason": "delisted: no candle trades after the delisting"})
    newest = facts.last_candle(symbol)
    live = facts.live_state(symbol)
    limit = timedelta(milliseconds=CANDLE_MS) + FRESHNESS_TOLERANCE
    metadata: Metadata = {"limit_minutes": limit.total_seconds() / 60}
    failing_tick = live is not None and live.failing
    if live is not None:
        metadata["last_live_tick"] = live.last_tick_at.isoformat() if live.last_tick_at else "none"
        if failing_tick:
            metadata["last_live_error"] = f"{live.last_error_at:%Y-%m-%d %H:%M:%S} {live.last_error}"
    if newest is None:
        return Outcome(False, ERROR, {**metadata, "newest_candle": "none"})
    age = now - (newest + timedelta(milliseconds=CANDLE_MS))  # since the newest candle closed
    metadata.update(newest_candle=newest.isoformat(), age_minutes=round(age.total_seconds() / 60, 2))
    if age <= limit and not failing_tick:
        return Outcome(True, metadata=metadata)
    return Outcome(False, WARN if age <= STALE_ERROR_AFTER else ERROR, metadata)


def rollup_exact_and_complete(rollup: Rollup) -> Evaluator:
    def evaluate(facts: Facts, key: str) -> Outcome:
        mismatches, partial = facts.rollup(rollup, key)
        report = facts.gaps(key)
        stride = rollup.minutes * 60_000
        # Buckets touched by candles that nothing explains (not an outage, listing or the clock).
        unexplained = sorted({
            from_ms(ms // stride * stride)
            for span in report.spans if span.cause == MISSING
            for ms in range(to_ms(span.start), to_ms(span.end), CANDLE_MS)
        })
        metadata: Metadata = {
            "mismatched_buckets": len(mismatches), "partial_buckets": len(partial),
            "unexplained_partial_buckets": len(unexplained), "full_bucket_candles": rollup.full_count,
        }
        if mismatches:
            metadata["first_mismatches"] = ", ".join(f"{m.bucket:%Y-%m-%d %H:%M} {m.problem}" for m in mismatches[:20])
        if unexplained:
            metadata["first_unexplained"] = ", ".join(f"{b:%Y-%m-%d %H:%M}" for b in unexplained[:20])
        return Outcome(not mismatches and not unexplained, ERROR, metadata)

    evaluate.__doc__ = (
        f"Stored {rollup.table} buckets equal an exact recomputation from the 5m candles, and every bucket "
        f"holds all {rollup.full_count} candles unless an exchange outage, the listing or the clock explains it.")
    return evaluate


def with_exchange_comparison(rollup: Rollup, base: Evaluator, bybit: BybitClient) -> Evaluator:
    """`base`, plus: the day's exact buckets equal Bybit's own candles of the rollup's interval.

    Bybit aggregates its own trades, so this checks our whole chain (fetch, store, aggregate)
    against an independent source; a day's closed buckets take one request (≤ 96 candles).
    """
    def evaluate(facts: Facts, key: str) -> Outcome:
        outcome = base(facts, key)
        store, now = facts.store, facts.now
        day, symbol = split_partition_key(key)
        start, end = day_start(day), day_start(day) + DAY
        ours = {b.bucket: b.values() for b in store.rollup_buckets(rollup=rollup.table, symbol=symbol, start=start, end=end)
                if b.bucket + rollup.stride <= now}  # Bybit serves closed candles only
        theirs = {c.start: tuple(Decimal(x) for x in (c.open, c.high, c.low, c.close, c.volume, c.turnover))
                  for c in bybit.fetch_klines(symbol=symbol, start=start, end=end, now=now,
                                              interval=rollup.bybit_interval)}
        # A bucket only one side has is a difference too.
        differ = sorted(b for b in set(ours) | set(theirs) if ours.get(b) != theirs.get(b))
        metadata = {**outcome.metadata, "exchange_buckets": len(theirs), "exchange_differences": len(differ)}
        if differ:
            metadata["first_exchange_differences"] = ", ".join(f"{b:%Y-%m-%d %H:%M}" for b in differ[:20])
        return Outcome(outcome.passed and not differ, ERROR, metadata)

    return evaluate
