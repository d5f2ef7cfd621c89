"""Per-partition asset checks on the raw candles and the rollups.

Each check is a predicate evaluated per (day, symbol) partition. In a run covering one
partition Dagster attaches the result to it; in a run covering a range it would record one
result with partition=None (measured on dagster 1.13.27), so there every partition's result
is also logged as its own `AssetCheckEvaluation` and the required result summarises the run.
What the checks read comes from `Facts`: one query per kind of fact for all the days of a
check step, sliced per day (a 92-day run issues 16 queries, not one per check and day).
"""

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from decimal import Decimal

import dagster as dg

from kline_pipeline import clock
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient
from kline_pipeline.gaps import MISSING, NOT_LISTED, OUTAGE, GapReport, GapSpan, gap_report
from kline_pipeline.ingest import DAY, day_start
from kline_pipeline.models import CANDLE_MS, from_ms, grid_floor, to_ms
from kline_pipeline.partitions import days_by_symbol, kline_partitions, split_partition_key
from kline_pipeline.rollups import ROLLUPS, Rollup, rollup_assets
from kline_pipeline.store import KlineStore

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
FIVE_MINUTES = timedelta(milliseconds=CANDLE_MS)


@dataclass(frozen=True)
class Outcome:
    passed: bool
    severity: dg.AssetCheckSeverity = ERROR
    metadata: dict[str, object] = field(default_factory=dict)


class Facts:
    """What the checks read for the partitions of one check step, each kind fetched ONCE per symbol
    over the days covered (a run of 92 days: ~15 queries instead of ~30 per partition), then
    sliced per day. Every bucket, hole cause and violation belongs to one UTC day, so a day's
    slice equals what a query over that day alone returns.
    """

    def __init__(self, store: KlineStore, keys: Sequence[str], now: datetime) -> None:
        self.store, self.now = store, now
        self._days = days_by_symbol(keys)
        self._cache: dict[tuple, object] = {}

    def _memo(self, key: tuple, compute: Callable[[], object]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _window(self, symbol: str) -> tuple[datetime, datetime]:
        days = self._days[symbol]
        return day_start(days[0]), day_start(days[-1]) + DAY

    def _by_day(self, rows: Iterable[tuple], day_of: Callable[[tuple], date]) -> dict[date, list[tuple]]:
        grouped: dict[date, list[tuple]] = defaultdict(list)
        for row in rows:
            grouped[day_of(row)].append(row)
        return grouped

    def _spans(self, symbol: str) -> GapReport:
        """The gap report from the last candle before the first day to the end of the last day."""
        start, end = self._window(symbol)
        return self._memo(("gaps", symbol), lambda: gap_report(
            self.store, symbol=symbol, start=start - FIVE_MINUTES, end=end, now=self.now))

    def gaps(self, key: str) -> GapReport:
        """The gap report of one partition's day."""
        day, symbol = split_partition_key(key)
        start, end = self._window(symbol)
        counts = self._memo(("counts", symbol), lambda: dict(self.store.query(
            "day_counts.sql", {"symbol": symbol, "start": start, "end": end})))
        whole = self._spans(symbol)
        return replace(whole, start=day_start(day), end=day_start(day) + DAY, present=counts.get(day, 0),
                       spans=_clip(whole.spans, day_start(day), day_start(day) + DAY))

    def boundary_causes(self, key: str) -> set[str]:
        """Why the previous day's last candle is absent (empty: it is stored)."""
        day, symbol = split_partition_key(key)
        return {s.cause for s in _clip(self._spans(symbol).spans, day_start(day) - FIVE_MINUTES, day_start(day))}

    def violations(self, key: str) -> list[tuple]:
        """(rule, candles, first candle) of the day's candles that break a rule."""
        day, symbol = split_partition_key(key)
        start, end = self._window(symbol)
        rows = self._memo(("ohlcv", symbol), lambda: self._by_day(self.store.query("ohlcv_violations.sql", {
            "symbol": symbol, "start": start, "end": end, "closed_until": from_ms(grid_floor(to_ms(self.now)))}),
            lambda r: r[0]))
        return [r[1:] for r in rows.get(day, [])]

    def rollup(self, rollup: Rollup, key: str) -> tuple[list[tuple], list[tuple]]:
        """(mismatched buckets, partial buckets) of the day in `rollup`."""
        day, symbol = split_partition_key(key)
        start, end = self._window(symbol)
        window = {"rollup": rollup.table, "symbol": symbol, "start": start, "end": end}

        def fetch(sql_file: str) -> dict[date, list[tuple]]:
            return self._by_day(self.store.query(sql_file, window), lambda r: r[0].astimezone(UTC).date())

        mismatches = self._memo(("mismatches", rollup.table, symbol), lambda: fetch("rollup_mismatches.sql"))
        partial = self._memo(("partial", rollup.table, symbol), lambda: fetch("rollup_partial_buckets.sql"))
        return mismatches.get(day, []), partial.get(day, [])

    def last_candle(self, symbol: str) -> datetime | None:
        return self._memo(("last", symbol), lambda: self.store.last_candle(symbol))


def _clip(spans: Iterable[GapSpan], start: datetime, end: datetime) -> tuple[GapSpan, ...]:
    return tuple(GapSpan(max(s.start, start), min(s.end, end), s.cause) for s in spans
                 if s.start < end and s.end > start)


Evaluator = Callable[[Facts, str], Outcome]


def no_missing_candles(facts: Facts, key: str) -> Outcome:
    """Every expected 5m candle of the day is stored: holes explained by a recorded exchange
    outage fail with WARN, unexplained holes with ERROR; days before listing pass."""
    report = facts.gaps(key)
    totals = report.totals
    metadata: dict[str, object] = {
        "expected": report.expected, "present": report.present, "missing": totals[MISSING],
        "exchange_outage": totals[OUTAGE], "not_listed": totals[NOT_LISTED],
        "gaps": dg.MetadataValue.md(report.markdown()),
    }
    if totals[MISSING]:
        return Outcome(False, ERROR, metadata)
    if totals[OUTAGE]:
        return Outcome(False, WARN, metadata)
    return Outcome(True, metadata=metadata)


def valid_ohlcv(facts: Facts, key: str) -> Outcome:
    """Every stored candle of the day is on the grid, closed, positive, with low ≤ open/close ≤ high
    and non-negative volume and turnover."""
    rows = facts.violations(key)
    metadata: dict[str, object] = {"violations": sum(r[1] for r in rows)}
    metadata.update({f"rule: {rule}": f"{n} candles, first at {first.isoformat()}" for rule, n, first in rows})
    return Outcome(not rows, ERROR, metadata)


def continuous_with_previous_day(facts: Facts, key: str) -> Outcome:
    """The previous day's last candle (23:55) is stored, unless the symbol was not listed yet
    (passes) or a recorded exchange outage explains it (WARN)."""
    day, _ = split_partition_key(key)
    causes = facts.boundary_causes(key)
    metadata: dict[str, object] = {"previous_candle": (day_start(day) - FIVE_MINUTES).isoformat(),
                                   "state": ", ".join(sorted(causes)) or "present"}
    if MISSING in causes:
        return Outcome(False, ERROR, metadata)
    if OUTAGE in causes:
        return Outcome(False, WARN, metadata)
    return Outcome(True, metadata=metadata)


FRESHNESS_TOLERANCE = timedelta(minutes=10)


def candles_fresh(facts: Facts, key: str, tolerance: timedelta = FRESHNESS_TOLERANCE) -> Outcome:
    """On the latest day: the newest stored candle closed no longer ago than one candle plus a
    tolerance (default 10 minutes). Per symbol, unlike Dagster's asset-level freshness.
    Earlier days pass: freshness is about the latest partition only."""
    day, symbol = split_partition_key(key)
    now = facts.now
    if day != now.date():
        return Outcome(True, metadata={"applies_to": "the latest day only"})
    newest = facts.last_candle(symbol)
    limit = timedelta(milliseconds=CANDLE_MS) + tolerance
    if newest is None:
        return Outcome(False, ERROR, {"newest_candle": "none", "limit_minutes": limit.total_seconds() / 60})
    age = now - (newest + timedelta(milliseconds=CANDLE_MS))  # since the newest candle closed
    metadata: dict[str, object] = {
        "newest_candle": newest.isoformat(), "age_minutes": round(age.total_seconds() / 60, 2),
        "limit_minutes": limit.total_seconds() / 60,
    }
    return Outcome(age <= limit, ERROR, metadata)


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
        metadata: dict[str, object] = {
            "mismatched_buckets": len(mismatches), "partial_buckets": len(partial),
            "unexplained_partial_buckets": len(unexplained), "full_bucket_candles": rollup.full_count,
        }
        if mismatches:
            metadata["first_mismatches"] = ", ".join(f"{b:%Y-%m-%d %H:%M} {p}" for b, p in mismatches[:20])
        if unexplained:
            metadata["first_unexplained"] = ", ".join(f"{b:%Y-%m-%d %H:%M}" for b in unexplained[:20])
        return Outcome(not mismatches and not unexplained, ERROR, metadata)

    evaluate.__doc__ = (
        f"Stored {rollup.table} buckets equal an exact recomputation from the 5m candles, and every bucket "
        f"holds all {rollup.full_count} candles unless an exchange outage, the listing or the clock explains it.")
    return evaluate


EXCHANGE_COMPARISON_ENV = "KLINE_CHECK_ROLLUPS_AGAINST_EXCHANGE"
"""Set to 1 to also compare each rollup day with Bybit's own candles (one request per rollup per day)."""


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
        ours = {r[0]: r[1:] for r in store.query(
            "rollup_compute.sql", {"rollup": rollup.table, "symbol": symbol, "start": start, "end": end})
            if r[0] + rollup.stride <= now}  # Bybit serves closed candles only
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


def _spec(asset: dg.AssetsDefinition, name: str, evaluator: Evaluator) -> tuple[dg.AssetCheckSpec, Evaluator]:
    spec = dg.AssetCheckSpec(name, asset=asset, partitions_def=kline_partitions, description=evaluator.__doc__)
    return spec, evaluator


def check_evaluation(check_key: dg.AssetCheckKey, partition: str, facts: Facts) -> dg.AssetCheckEvaluation:
    """One check on one partition, as an event to log (used where no check step runs: live refresh)."""
    outcome = EVALUATORS[check_key](facts, partition)
    return dg.AssetCheckEvaluation(asset_key=check_key.asset_key, check_name=check_key.name, passed=outcome.passed,
                                   severity=outcome.severity, metadata=outcome.metadata, partition=partition)


def evaluate_partitions(
    context: dg.AssetCheckExecutionContext, store: KlineStore,
    evaluators: Mapping[dg.AssetCheckKey, Evaluator] | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """Run each selected check on each partition of the run; see the module docstring."""
    op_context = context.op_execution_context
    keys = list(op_context.partition_keys)
    now = clock.utcnow()
    facts = Facts(store, keys, now)  # shared by every check of this step
    for check_key in sorted(context.selected_asset_check_keys, key=str):
        evaluate = (evaluators or EVALUATORS)[check_key]
        applicable = keys
        if evaluate is candles_fresh and len(keys) > 1:
            # Freshness concerns the latest day only: a backfill of history records no result for it
            # on older days (each recorded result costs Dagster an event write).
            applicable = [k for k in keys if split_partition_key(k)[0] == now.date()]
        outcomes = {key: evaluate(facts, key) for key in applicable}
        if len(keys) == 1:
            outcome = outcomes[keys[0]]
            yield dg.AssetCheckResult(asset_key=check_key.asset_key, check_name=check_key.name,
                                      passed=outcome.passed, severity=outcome.severity, metadata=outcome.metadata)
            continue
        for key, outcome in outcomes.items():
            op_context.log_event(dg.AssetCheckEvaluation(
                asset_key=check_key.asset_key, check_name=check_key.name, passed=outcome.passed,
                severity=outcome.severity, metadata=outcome.metadata, partition=key))
        failed = [k for k, o in outcomes.items() if not o.passed]
        worst = ERROR if any(outcomes[k].severity == ERROR for k in failed) else WARN
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=not failed, severity=worst,
            metadata={"partitions": len(keys), "evaluated_partitions": len(applicable), "failed_partitions": len(failed),
                      "first_failed": ", ".join(failed[:50]) or "none"},
        )


_RAW = [_spec(price_klines_5m, f.__name__, f)
        for f in (no_missing_candles, valid_ohlcv, continuous_with_previous_day, candles_fresh)]
# One check per rollup (not one per condition): every check result of every partition is an
# event Dagster writes, and in a backfill those writes cost more than the checks' SQL.
_ROLLUP = [_spec(asset, "exact_and_complete", rollup_exact_and_complete(rollup))
           for rollup, asset in zip(ROLLUPS, rollup_assets, strict=True)]

EVALUATORS: dict[dg.AssetCheckKey, Evaluator] = {spec.key: f for spec, f in _RAW + _ROLLUP}
RAW_CHECK_KEYS = [spec.key for spec, _ in _RAW]
ROLLUP_CHECK_KEYS = {rollup.table: [spec.key for spec, _ in _ROLLUP if spec.asset_key.path[-1] == rollup.table]
                     for rollup in ROLLUPS}


@dg.multi_asset_check(specs=[spec for spec, _ in _RAW], can_subset=True, name="price_klines_5m_checks")
def raw_checks(context: dg.AssetCheckExecutionContext, kline_store: KlineStore) -> Iterator[dg.AssetCheckResult]:
    """Completeness, validity and day-boundary continuity of the stored 5m candles (reads only)."""
    yield from evaluate_partitions(context, kline_store)


@dg.multi_asset_check(specs=[spec for spec, _ in _ROLLUP], can_subset=True, name="rollup_checks")
def rollup_checks(
    context: dg.AssetCheckExecutionContext, kline_store: KlineStore, bybit: BybitClient
) -> Iterator[dg.AssetCheckResult]:
    """Each rollup equals a recomputation from the 5m candles and its short buckets are explained;
    with KLINE_CHECK_ROLLUPS_AGAINST_EXCHANGE=1 (off by default, it costs requests) it also equals
    Bybit's own candles of that interval."""
    evaluators = None
    if os.environ.get(EXCHANGE_COMPARISON_ENV) == "1":
        evaluators = {spec.key: with_exchange_comparison(rollup, f, bybit)
                      for (spec, f), rollup in zip(_ROLLUP, ROLLUPS, strict=True)}
    yield from evaluate_partitions(context, kline_store, evaluators)
