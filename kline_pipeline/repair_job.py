"""The outage_repair schedule and job: recorded exchange outages re-fetched through Dagster.

See `kline_pipeline.repair` for the rules. The schedule ticks hourly and requests a run only when
an outage is due (otherwise the tick is skipped, saying so), so the run list shows attempts only.
"""

import dagster as dg
from pydantic import Field

from kline_pipeline import clock
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient
from kline_pipeline.checks import FRESHNESS_CHECK_KEY, RAW_CHECK_KEYS, Facts, evaluate, evaluation_events
from kline_pipeline.event_writes import log_check_evaluations
from kline_pipeline.partitions import SYMBOLS_PARTITIONS_NAME, partition_key, valid_symbols
from kline_pipeline.repair import DELAYS_ENV, DayRepair, delays_from_env, describe, due_repairs, parse_delays, \
    repair_symbol
from kline_pipeline.store import KlineStore


class OutageRepairConfig(dg.Config):
    after: str | None = Field(default=None, description=f"delays after an outage was first seen at which it is "
                              f"re-fetched, e.g. '1h,24h,7d' (default: {DELAYS_ENV}, else 1h,24h,7d)")


def _markdown(repairs: list[DayRepair]) -> str:
    lines = ["| symbol | day | outage candles before | recovered | still out |", "|---|---|---|---|---|"]
    lines += [f"| {r.symbol} | {r.day} | {r.outage_before} | {r.recovered} | {r.still_out} |" for r in repairs[:100]]
    return "\n".join(lines)


@dg.op(pool="bybit_api", tags={"kind": "repair"}, out=dg.Out(dict, description="candles recovered per symbol"))
def repair_outages(context: dg.OpExecutionContext, config: OutageRepairConfig, bybit: BybitClient,
                   kline_store: KlineStore) -> dg.Output:
    """Re-fetch every (symbol, day) whose recorded outages are due (Bybit -> price_klines and
    price_kline_gaps, through the ingest path), record each attempt in price_kline_gap_repairs, and
    log a price_klines_5m materialization with the raw checks for each day whose candles changed.
    Re-running re-fetches whole days again: the same rows, one more recorded attempt."""
    now = clock.utcnow()
    delays = parse_delays(config.after) if config.after else delays_from_env()
    symbols = valid_symbols(context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))
    due = due_repairs(kline_store, symbols=symbols, now=now, delays=delays)
    repairs: list[DayRepair] = []
    for symbol, days in due.items():
        done, report = repair_symbol(bybit=bybit, store=kline_store, symbol=symbol, days=days, now=now,
                                     run_id=context.run_id)
        repairs += done
        ingested = {d.day: d.metadata() for d in report.days}
        for repair in done:
            if repair.changed or repair.recovered:  # what changed is a new version of that raw day
                context.log_event(dg.AssetMaterialization(
                    price_klines_5m.key, partition=partition_key(repair.day, symbol),
                    metadata={**ingested.get(repair.day, {}), "mode": "outage repair",
                              "outage_candles_before": repair.outage_before, "recovered": repair.recovered,
                              "still_out": repair.still_out}))
    keys = [partition_key(r.day, r.symbol) for r in repairs if r.changed or r.recovered]
    if keys:  # the raw checks judge the new versions (candles_fresh follows its own sensor)
        checks = [k for k in RAW_CHECK_KEYS if k != FRESHNESS_CHECK_KEY]
        log_check_evaluations(context, evaluation_events(
            context.instance, evaluate(checks, keys, Facts(kline_store, keys, now))))
    recovered = {s: sum(r.recovered for r in repairs if r.symbol == s) for s in due}
    context.log.info(f"{len(repairs)} day(s) re-fetched for {len(due)} symbol(s) (outages due after "
                     f"{describe(delays)}); {sum(recovered.values())} candle(s) recovered, "
                     f"{sum(r.still_out for r in repairs)} still out")
    return dg.Output(recovered, metadata={
        "days_refetched": len(repairs), "candles_recovered": sum(recovered.values()),
        "outage_candles_still_out": sum(r.still_out for r in repairs), "delays": describe(delays),
        "days_changed": len(keys), "repairs": dg.MetadataValue.md(_markdown(repairs))})


@dg.job(description="Re-fetch the days holding recorded exchange outages that are due (run by outage_repair).")
def outage_repair_job() -> None:
    repair_outages()


@dg.schedule(
    cron_schedule="7 * * * *",
    job=outage_repair_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: when a recorded exchange outage is due for a re-fetch (1h, 24h, 7d after it was first "
    f"seen; {DELAYS_ENV}), launch outage_repair_job for it.",
)
def outage_repair(context: dg.ScheduleEvaluationContext, kline_store: KlineStore) -> dg.RunRequest | dg.SkipReason:
    delays = delays_from_env()
    symbols = valid_symbols(context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))
    due = due_repairs(kline_store, symbols=symbols, now=clock.utcnow(), delays=delays)
    if not due:
        return dg.SkipReason(f"no recorded exchange outage is due for a re-fetch (after {describe(delays)})")
    scheduled = context.scheduled_execution_time
    days = sum(map(len, due.values()))
    return dg.RunRequest(run_key=scheduled.isoformat() if scheduled else None,
                         run_config={"ops": {"repair_outages": {"config": {"after": describe(delays).replace(" ", "")}}}},
                         tags={"kline/outage_days": str(days), "kline/symbols": ",".join(sorted(due))[:200]})
