"""The live_refresh schedule: at every candle close, one run refreshes all symbols.

Symbols are refreshed in parallel (`workers` threads, each with its own Bybit session; the
process-wide rate limit and the `bybit_api` pool bound the requests), and one symbol's failure
never stops the others: it is recorded, shows in its candles_fresh result, and fails the run at
the end so the run list shows it.

What a tick records in Dagster follows what changed, not the number of symbols (every record is
an event write): a day's raw and rollup materializations and their check results when a candle
of that day changed and the day is earlier than today (a late correction), when the day has
closed since the last recorded one (finalised at midnight, whether or not a candle came), or on
today's first write; candles_fresh on today's partition when its outcome changes (`freshness.py`).
A quiet tick of 200 symbols records nothing but changes.
"""

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from datetime import date, datetime, timedelta

import dagster as dg
from dagster._core.events import DagsterEventType
from pydantic import Field

from kline_pipeline import clock
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient
from kline_pipeline.checks import (
    FRESHNESS_CHECK_KEY,
    RAW_CHECK_KEYS,
    ROLLUP_CHECK_KEYS,
    Facts,
    evaluate,
    evaluation_events,
    log_evaluation,
)
from kline_pipeline.event_writes import log_check_evaluations, log_materializations
from kline_pipeline.freshness import report_freshness
from kline_pipeline.live import DEFAULT_LOOKBACK_MINUTES, SymbolTick, refresh_symbol, validate_lookbacks
from kline_pipeline.partitions import SYMBOLS_PARTITIONS_NAME, partition_key, valid_symbols
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.store import KlineStore

SCHEDULED_TIME_TAG = "dagster/scheduled_execution_time"
ACTIVE_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                   dg.DagsterRunStatus.STARTED]
ROLLUP_BY_TABLE = {rollup.table: rollup for rollup in ROLLUPS}
MAX_WORKERS = 4
"""Each worker holds one candle-database connection while it writes a symbol; the store's pool
per process (KlineStore.engine: 2 + 4 overflow) leaves room for the op's own queries."""


class LiveRefreshConfig(dg.Config):
    delay_seconds: int = Field(default=15, description="wait this long after the candle close so Bybit has closed it")
    lookback_minutes: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_LOOKBACK_MINUTES),
        description="per rollup timeframe: how far back each tick recomputes buckets",
    )
    refetch_minutes: int | None = Field(
        default=None, description="re-fetch this far back each tick (default: the longest lookback); older holes "
        "are left to a backfill (`kline-pipeline backfill --missing`)")
    workers: int = Field(default=MAX_WORKERS, ge=1, le=MAX_WORKERS, description="symbols refreshed at once (threads)")


def _refresh_all(config: LiveRefreshConfig, bybit: BybitClient, store: KlineStore, symbols: Sequence[str],
                 now: datetime) -> tuple[dict[str, SymbolTick], dict[str, str]]:
    """Refresh every symbol in parallel; (ticks, errors) by symbol. The threads only fetch and write;
    every Dagster event is logged by the op's own thread afterwards."""
    lookbacks = validate_lookbacks(config.lookback_minutes)
    refetch = timedelta(minutes=config.refetch_minutes or max(lookbacks.values()))
    states = store.live_states(symbols)
    # A delisted symbol has nothing left to refresh: it is skipped (its candles_fresh passes,
    # saying "delisted"), not fetched and failed every five minutes. Only a confirmed one (Closed):
    # a delivery time passed without it is re-read by refresh_symbol (it may have been postponed).
    delisted = store.closed_symbols(symbols, now)
    symbols = [s for s in symbols if s not in delisted]
    local = threading.local()

    def one(symbol: str) -> tuple[str, SymbolTick | None, str | None]:
        if not hasattr(local, "client"):  # one HTTP session per thread; the rate limit is process-wide
            local.client = BybitClient(**bybit.model_dump())
        try:
            return symbol, refresh_symbol(bybit=local.client, store=store, symbol=symbol, now=now,
                                          lookbacks=lookbacks, refetch=refetch, state=states.get(symbol)), None
        except Exception as exc:  # one bad symbol must not stop the others
            return symbol, None, f"{type(exc).__name__}: {exc}"

    ticks, errors = {}, {}
    with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="live") as pool:
        for symbol, tick, error in pool.map(one, symbols):
            if tick is not None:
                ticks[symbol] = tick
            else:
                errors[symbol] = str(error)
    store.record_live_ticks(at=now, errors={**dict.fromkeys(ticks), **errors})
    return ticks, errors


def _record(context: dg.OpExecutionContext, store: KlineStore, ticks: dict[str, SymbolTick],
            now: datetime) -> dict[str, list[date]]:
    """Materializations of each symbol's days to record (raw, then each rollup), then every check
    result on them, evaluated and pointed at their materializations in one batch. Returns the days
    recorded per symbol."""
    todays = {partition_key(now.date(), symbol) for symbol in ticks}
    materialized = context.instance.event_log_storage.get_latest_storage_id_by_partition(
        price_klines_5m.key, DagsterEventType.ASSET_MATERIALIZATION, partitions=todays) if todays else {}
    days = {symbol: tick.days_to_record(today_materialized=partition_key(now.date(), symbol) in materialized)
            for symbol, tick in ticks.items()}
    keys = [partition_key(day, symbol) for symbol, symbol_days in days.items() for day in symbol_days]
    if keys:
        facts = Facts(store, keys, now)
        materializations = []
        for symbol, symbol_days in days.items():
            tick, ingest = ticks[symbol], {d.day: d for d in ticks[symbol].ingest.days}
            for day in symbol_days:
                key = partition_key(day, symbol)
                fetched = ingest[day].metadata() if day in ingest else {}
                materializations.append(dg.AssetMaterialization(price_klines_5m.key, partition=key, metadata={
                    **fetched, "rows": facts.gaps(key).present, "mode": "live refresh",
                    "as_of": tick.closed_until.isoformat()}))
        # Rollups after the raw days: the rollup sensor then sees them as already refreshed.
        for symbol, symbol_days in days.items():
            for table, (start, end, summary) in ticks[symbol].rollups.items():
                for day in symbol_days:
                    materializations.append(dg.AssetMaterialization(table, partition=partition_key(day, symbol), metadata={
                        **summary.for_day(day).metadata(ROLLUP_BY_TABLE[table].full_count), "mode": "live refresh",
                        "window": f"{start.isoformat()} .. {end.isoformat()}"}))
        log_materializations(context, materializations)
        check_keys = RAW_CHECK_KEYS + [k for keys_ in ROLLUP_CHECK_KEYS.values() for k in keys_]
        outcomes = evaluate(check_keys, keys, facts)
        for symbol in ticks:  # today's candles_fresh is recorded by report_freshness, which remembers it
            outcomes[FRESHNESS_CHECK_KEY].pop(partition_key(now.date(), symbol), None)
        log_check_evaluations(context, evaluation_events(context.instance, outcomes))
    store.mark_live_recorded(symbols=list(ticks), through=now.date() - timedelta(days=1))
    return days


@dg.op(pool="bybit_api", tags={"kind": "live"}, out=dg.Out(dict, description="error by failed symbol"))
def refresh_latest_candles(
    context: dg.OpExecutionContext, config: LiveRefreshConfig, bybit: BybitClient, kline_store: KlineStore
) -> dict[str, str]:
    """Fetch the newly closed candles of every symbol, refresh the rollups' lookbacks, and record
    in Dagster what changed (see the module docstring). Returns the symbols that failed; the next
    step fails the run with them (raising here would discard the results this step recorded)."""
    scheduled = context.run.tags.get(SCHEDULED_TIME_TAG)
    if scheduled:  # fire a little after the close: Bybit needs a moment to close the candle
        wait = (datetime.fromisoformat(scheduled) + timedelta(seconds=config.delay_seconds) - clock.utcnow()).total_seconds()
        if wait > 0:
            time.sleep(wait)
    now = clock.utcnow()
    registered = list(context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))
    symbols = valid_symbols(registered)
    errors = {s: "not a valid Bybit symbol (2-30 characters of A-Z and 0-9, prefixed spot: or inverse: for "
              "those markets); remove it with "
              "`kline-pipeline symbols remove`" for s in registered if s not in symbols}
    started = time.perf_counter()
    ticks, failed = _refresh_all(config, bybit, kline_store, symbols, now)
    errors.update(failed)
    fetched = time.perf_counter()
    recorded = _record(context, kline_store, ticks, now)
    # Today's candles_fresh: recorded on a change, and wherever today was just (re)materialized.
    rematerialized = [symbol for symbol, days in recorded.items() if now.date() in days]
    fresh = report_freshness(context.instance, kline_store, symbols, now, partial(log_evaluation, context),
                             always=rematerialized)
    for symbol in sorted(errors):
        context.log.error(f"{symbol}: {errors[symbol]}")
    delisted = sorted(set(symbols) - set(ticks) - set(errors))
    if delisted:
        context.log.info(f"{len(delisted)} delisted symbol(s) not refreshed: {', '.join(delisted[:20])}")
    context.log.info(
        f"{len(ticks)} of {len(registered)} symbols refreshed in {fetched - started:.1f} s "
        f"({sum(t.ingest.requests for t in ticks.values())} requests, "
        f"{sum(t.ingest.changed for t in ticks.values())} candles changed); "
        f"{sum(map(len, recorded.values()))} day partitions recorded, freshness recorded for {len(fresh)}")
    kline_store.record_job_run(lookbacks=validate_lookbacks(config.lookback_minutes), started_at=now,
                               succeeded=not errors)  # what timescaledb_information.job_stats reports
    return {symbol: errors[symbol] for symbol in sorted(errors)}


@dg.op
def fail_for_failed_symbols(context: dg.OpExecutionContext, errors: dict[str, str]) -> None:
    """Fail the run when any symbol failed, naming them (the others were refreshed and recorded)."""
    if errors:
        registered = len(context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))
        raise dg.Failure(description=f"live refresh failed for {len(errors)} of {registered} symbol(s): "
                         f"{', '.join(list(errors)[:20])}", metadata=dict(list(errors.items())[:50]))


@dg.job(description="One live tick for all symbols (run by the live_refresh schedule).")
def live_refresh_job() -> None:
    fail_for_failed_symbols(refresh_latest_candles())


@dg.schedule(
    cron_schedule="*/5 * * * *",
    job=live_refresh_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At every 5-minute candle close: fetch new candles and refresh rollup lookbacks for all symbols.",
)
def live_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    # Ticks are cheap but must not pile up: a still-running tick makes this one skip.
    active = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=live_refresh_job.name, statuses=ACTIVE_STATUSES), limit=1)
    if active:
        return dg.SkipReason(f"previous live refresh run {active[0].run_id} is still {active[0].status.value}; "
                             "skipping this tick")
    scheduled = context.scheduled_execution_time
    return dg.RunRequest(run_key=scheduled.isoformat() if scheduled else None)
