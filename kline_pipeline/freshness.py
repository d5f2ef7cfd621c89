"""candles_fresh on the latest day, recorded when it CHANGES: by the live tick and by a watchdog sensor.

Evaluating freshness is cheap; recording it is a Dagster event write. Recorded every 5 minutes
for every symbol it would be 57,600 events a day at 200 symbols, so a symbol's result is
recorded only when its outcome (passed / WARN / ERROR) differs from the last one recorded for
today's partition (kept in `price_kline_live_state`), or when today's partition was just
re-materialized (an older result would no longer be current). Reading the last outcomes,
recording the changes and saving them happen in one transaction under one advisory lock, so the
tick and the sensor never interleave (which could leave Dagster showing a stale outcome). The
watchdog sensor makes a symbol go stale in the UI even when nothing refreshes it at all (the
schedule stopped, the daemon's run queue stuck): it needs no run.
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import dagster as dg

from kline_pipeline import clock
from kline_pipeline.checks import FRESHNESS_CHECK_KEY, Facts, evaluate, evaluation_events
from kline_pipeline.partitions import SYMBOLS_PARTITIONS_NAME, partition_key, valid_symbols
from kline_pipeline.store import KlineStore


def report_freshness(
    instance: dg.DagsterInstance, store: KlineStore, symbols: Sequence[str], now: datetime,
    record: Callable[[dg.AssetCheckEvaluation], None], *, always: Iterable[str] = (),
) -> list[str]:
    """Evaluate candles_fresh on today's partition of each symbol; record the changed ones (and
    those in `always`) with `record`. Returns the partition keys recorded."""
    keys = {symbol: partition_key(now.date(), symbol) for symbol in symbols}
    if not keys:
        return []
    facts = Facts(store, list(keys.values()), now).prefetch_latest(list(keys))
    outcomes = evaluate([FRESHNESS_CHECK_KEY], list(keys.values()), facts)[FRESHNESS_CHECK_KEY]
    forced = set(always)
    with store.fresh_reports(now.date()) as reports:
        recorded = reports.recorded(list(keys))
        changed = {symbol: outcomes[key] for symbol, key in keys.items()
                   if symbol in forced or recorded.get(symbol) != outcomes[key].state}
        for event in evaluation_events(instance, {FRESHNESS_CHECK_KEY: {keys[s]: o for s, o in changed.items()}}):
            record(event)
        reports.save({symbol: outcome.state for symbol, outcome in changed.items()}, at=now)
    return sorted(keys[s] for s in changed)


@dg.sensor(
    name="candles_fresh_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Records candles_fresh on today's partition of every symbol whose freshness changed (e.g. "
    "the live refresh stopped): a symbol that is not refreshed turns WARN, then ERROR, without any run.",
)
def candles_fresh_sensor(context: dg.SensorEvaluationContext, kline_store: KlineStore) -> dg.SkipReason:
    symbols = valid_symbols(context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))
    recorded = report_freshness(context.instance, kline_store, symbols, clock.utcnow(),
                                context.instance.report_runless_asset_event)
    return dg.SkipReason(f"{len(symbols)} symbols checked; freshness changed for "
                         f"{', '.join(recorded[:20]) if recorded else 'none'}")
