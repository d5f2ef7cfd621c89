"""Rollup sensor benchmark: one tick's time and what it stores, at 1 / 50 / 200 symbols.

    python bench/bench_sensor.py [--sizes 1,50,200] [--days 30] [--old-sizes 1,50]

For each size, a Dagster instance on the pooled PostgreSQL storage (a throwaway database) gets N
symbols and, per symbol, `--days` days of raw and rollup materializations already refreshed
(written straight into the event log). The date partitions span KLINE_START_DATE (2020) to today,
so the partition space per asset is N x ~2,500 whatever the history. Measured:

- ours (`kline_pipeline/sensors.py`): an idle tick (nothing new) and a tick after one symbol's
  92-day raw backfill (median of 5 each), and the bytes a tick hands the daemon to store (its
  cursor and run requests, serialized);
- Dagster's AutomationCondition sensor with the condition the rollups used before
  (`eager()` without `in_latest_time_window()`), on the same instance (`--old-sizes`): an idle
  tick's time and the serialized size of its evaluation results and cursor.
Figures, not tests.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from common import admin_url_default, throwaway_database

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._serdes import serialize_value

from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient
from kline_pipeline.partitions import partition_key, symbols_partitions
from kline_pipeline.rollups import rollup_assets
from kline_pipeline.sensors import RollupCursor, evaluate_tick
from kline_pipeline.store import KlineStore

TEMPLATE = Path(__file__).resolve().parent.parent / "kline_pipeline" / "instance" / "local.yaml"
OLD_CONDITION = dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())


def write_materializations(instance: dg.DagsterInstance, asset: dg.AssetKey, partitions: list[str]) -> None:
    """Materialization events without a run, in batches (one INSERT each on PostgreSQL)."""
    entries = [EventLogEntry(
        error_info=None, level="debug", user_message="", run_id="", timestamp=time.time(),
        dagster_event=DagsterEvent(DagsterEventType.ASSET_MATERIALIZATION.value, job_name="__ASSET_JOB",
                                   event_specific_data=StepMaterializationData(dg.AssetMaterialization(asset, partition=p))))
        for p in partitions]
    for i in range(0, len(entries), 2000):
        instance.event_log_storage.store_event_batch(entries[i:i + 2000])


def median_time(fn, repeats: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(admin_url: str, symbols: int, days: int, old: bool) -> dict:
    names = [f"SYM{i}USDT" for i in range(symbols)]
    first = date.today() - timedelta(days=days + 100)
    history = [partition_key(first + timedelta(days=d), s) for s in names for d in range(days)]
    with throwaway_database(admin_url, f"sensor_{symbols}") as storage, tempfile.TemporaryDirectory() as home:
        os.environ["DAGSTER_PG_URL"] = storage
        Path(home, "dagster.yaml").write_text(TEMPLATE.read_text())
        with dg.DagsterInstance.from_config(home) as instance:
            instance.add_dynamic_partitions(symbols_partitions.name, names)
            t0 = time.perf_counter()
            write_materializations(instance, price_klines_5m.key, history)
            for asset in rollup_assets:  # refreshed after the raw days: nothing is stale
                write_materializations(instance, asset.key, history)
            setup_s = time.perf_counter() - t0
            # The backlog, read once: a tick reads at most PAGE materializations, so with more
            # history than that it takes several ticks before one is idle.
            cursor, previous = RollupCursor(), None
            while cursor != previous:
                previous, (_, cursor) = cursor, evaluate_tick(instance, cursor)
            idle_s, (idle_requests, _) = median_time(lambda: evaluate_tick(instance, cursor))
            new = [partition_key(first + timedelta(days=days + d), names[0]) for d in range(92)]
            write_materializations(instance, price_klines_5m.key, new)
            work_s, (requests, after) = median_time(lambda: evaluate_tick(instance, cursor))
            stored = len(after.dumps()) + len(serialize_value(list(requests)))
            figures = {"symbols": symbols, "days": days, "setup_s": round(setup_s, 1),
                       "partitions_per_asset": len(price_klines_5m.partitions_def.get_partition_keys(
                           dynamic_partitions_store=instance)),
                       "idle_tick_ms": round(idle_s * 1000, 1), "idle_requests": len(idle_requests),
                       "work_tick_ms": round(work_s * 1000, 1), "work_requests": len(requests),
                       "work_stored_bytes": stored}
            if old:
                defs = dg.Definitions(assets=[price_klines_5m, *dg.map_asset_specs(
                    lambda spec: spec.replace_attributes(automation_condition=OLD_CONDITION), rollup_assets)],
                    resources={"bybit": BybitClient(), "kline_store": KlineStore()})  # never called: no run
                start = dg.evaluate_automation_conditions(defs=defs, instance=instance)
                old_s, result = median_time(lambda: dg.evaluate_automation_conditions(
                    defs=defs, instance=instance, cursor=start.cursor), repeats=3)
                figures.update(old_idle_tick_ms=round(old_s * 1000, 1),
                               old_stored_bytes=len(serialize_value(result.cursor)) + sum(
                                   len(serialize_value(r.serializable_evaluation)) for r in result.results))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--sizes", default="1,50,200")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--old-sizes", default="1,50", help="sizes at which the old AutomationCondition sensor is timed")
    args = parser.parse_args()
    old = {int(n) for n in args.old_sizes.split(",") if n}
    rows = [measure(args.admin_url, int(n), args.days, int(n) in old) for n in args.sizes.split(",")]
    print(f"{'symbols':>7} {'partitions/asset':>16} {'idle tick ms':>12} {'92 new days: ms':>15} {'requests':>8} "
          f"{'stored B':>9} {'old sensor idle ms':>18} {'old stored B':>12}")
    for r in rows:
        print(f"{r['symbols']:>7} {r['partitions_per_asset']:>16} {r['idle_tick_ms']:>12} {r['work_tick_ms']:>15} "
              f"{r['work_requests']:>8} {r['work_stored_bytes']:>9} {r.get('old_idle_tick_ms', '-')!s:>18} "
              f"{r.get('old_stored_bytes', '-')!s:>12}")
    print(f"(loadavg {os.getloadavg()[0]:.2f}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", file=sys.stderr)
    print("RESULT " + json.dumps({"sizes": rows}))


if __name__ == "__main__":
    main()
