"""The live_refresh schedule: every candle close, one run refreshes all symbols."""

import time
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field

from kline_pipeline import clock
from kline_pipeline.bybit import BybitClient
from kline_pipeline.checks import RAW_CHECK_KEYS, ROLLUP_CHECK_KEYS, Facts, check_evaluation
from kline_pipeline.live import DEFAULT_LOOKBACK_MINUTES, refresh_symbol, validate_lookbacks
from kline_pipeline.partitions import partition_key, symbols_partitions
from kline_pipeline.store import KlineStore

SCHEDULED_TIME_TAG = "dagster/scheduled_execution_time"
ACTIVE_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                   dg.DagsterRunStatus.STARTED]


class LiveRefreshConfig(dg.Config):
    delay_seconds: int = Field(default=15, description="wait this long after the candle close so Bybit has closed it")
    lookback_minutes: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_LOOKBACK_MINUTES),
        description="per rollup timeframe: how far back each tick recomputes buckets",
    )
    refetch_minutes: int | None = Field(
        default=None, description="re-fetch at least this far back each tick (default: the longest lookback)")


@dg.op(pool="bybit_api", tags={"kind": "live"})
def refresh_latest_candles(
    context: dg.OpExecutionContext, config: LiveRefreshConfig, bybit: BybitClient, kline_store: KlineStore
) -> None:
    """Fetch the newly closed candles of every symbol, refresh the rollups' lookbacks, and record
    it as materialisations and check results of the touched partitions (today's, and earlier
    days while they are inside a window), so the UI stays current without one run per symbol."""
    lookbacks = validate_lookbacks(config.lookback_minutes)
    refetch = timedelta(minutes=config.refetch_minutes or max(lookbacks.values()))
    scheduled = context.run.tags.get(SCHEDULED_TIME_TAG)
    if scheduled:  # fire a little after the close: Bybit needs a moment to close the candle
        wait = (datetime.fromisoformat(scheduled) + timedelta(seconds=config.delay_seconds) - clock.utcnow()).total_seconds()
        if wait > 0:
            time.sleep(wait)
    now = clock.utcnow()
    failures: dict[str, str] = {}
    for symbol in context.instance.get_dynamic_partitions(symbols_partitions.name):
        try:
            tick = refresh_symbol(bybit=bybit, store=kline_store, symbol=symbol, now=now, lookbacks=lookbacks,
                                  refetch=refetch)
        except Exception as exc:  # one bad symbol must not stop the others; the run still fails below
            failures[symbol] = f"{type(exc).__name__}: {exc}"
            context.log.error(f"{symbol}: {failures[symbol]}")
            continue
        raw_keys = [partition_key(day, symbol) for day in tick.raw_days]
        rollup_keys = {table: [partition_key(day, symbol) for day in tick.rollup_days(table)] for table in tick.rollups}
        facts = Facts(kline_store, raw_keys + [k for keys in rollup_keys.values() for k in keys], now)
        for key in raw_keys:
            context.log_event(dg.AssetMaterialization("price_klines_5m", partition=key, metadata={
                **tick.ingest.metadata(), "mode": "live refresh"}))
        # Rollups after the raw asset: the automation sensor then sees them as already refreshed.
        for table, (start, end, summary) in tick.rollups.items():
            for key in rollup_keys[table]:
                context.log_event(dg.AssetMaterialization(table, partition=key, metadata={
                    "buckets": summary.buckets, "partial_buckets": summary.partial_buckets,
                    "last_bucket": summary.last_bucket.isoformat() if summary.last_bucket else "none",
                    "window": f"{start.isoformat()} .. {end.isoformat()}", "mode": "live refresh"}))
                for check_key in ROLLUP_CHECK_KEYS[table]:
                    context.log_event(check_evaluation(check_key, key, facts))
        for key in raw_keys:
            for check_key in RAW_CHECK_KEYS:
                context.log_event(check_evaluation(check_key, key, facts))
        context.log.info(f"{symbol}: {tick.ingest.requests} requests, {tick.ingest.changed} candles changed, "
                         f"newest {tick.ingest.last_candle}")
    kline_store.record_job_run(lookbacks=lookbacks, started_at=now, succeeded=not failures)  # timescaledb_information
    if failures:
        raise dg.Failure(description=f"live refresh failed for {len(failures)} symbol(s)", metadata=failures)


@dg.job(description="One live tick for all symbols (run by the live_refresh schedule).")
def live_refresh_job() -> None:
    refresh_latest_candles()


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
