"""candles_fresh on the latest day, recorded when it CHANGES: by the live tick and by a watchdog sensor.

Evaluating freshness is cheap; recording it is a Dagster event write. Recorded every 5 minutes
for every symbol it would be 57,600 events a day at 200 symbols, so a symbol's result is
recorded only when its outcome (passed / WARN / ERROR) differs from the last one recorded (kept in
`price_kline_live_state`, claimed atomically so the tick and the sensor never record the same
change twice), or when today's partition was just re-materialized (an older result would no
longer be current). The watchdog sensor makes a symbol go stale in the UI even when nothing
refreshes it at all (the schedule stopped, the daemon's run queue stuck): it needs no run.
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import dagster as dg

from kline_pipeline import clock
from kline_pipeline.checks import FRESHNESS_CHECK_KEY, Facts, evaluate, evaluation_events
from kline_pipeline.partitions import partition_key, symbols_partitions, valid_symbols
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
    facts = Facts(store, list(keys.values()), now)
    outcomes = evaluate([FRESHNESS_CHECK_KEY], list(keys.values()), facts)[FRESHNESS_CHECK_KEY]
    forced = set(always)
    chosen = {key: outcomes[key] for symbol, key in keys.items()
              if store.claim_fresh_report(symbol=symbol, state=outcomes[key].state, at=now) or symbol in forced}
    for event in evaluation_events(instance, {FRESHNESS_CHECK_KEY: chosen}):
        record(event)
    return sorted(chosen)


@dg.sensor(
    name="candles_fresh_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Records candles_fresh on today's partition of every symbol whose freshness changed (e.g. "
    "the live refresh stopped): a symbol that is not refreshed turns WARN, then ERROR, without any run.",
)
def candles_fresh_sensor(context: dg.SensorEvaluationContext, kline_store: KlineStore) -> dg.SkipReason:
    symbols = valid_symbols(context.instance.get_dynamic_partitions(symbols_partitions.name))
    recorded = report_freshness(context.instance, kline_store, symbols, clock.utcnow(),
                                context.instance.report_runless_asset_event)
    return dg.SkipReason(f"{len(symbols)} symbols checked; freshness changed for "
                         f"{', '.join(recorded[:20]) if recorded else 'none'}")
