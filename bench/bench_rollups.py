"""Rollup benchmark: refresh all six rollups of 1 symbol x 365 days (105,120 candles).

    python bench/bench_rollups.py [--admin-url URL]

Side by side in the same run: REFRESH MATERIALIZED VIEW of six equivalent plain-PostgreSQL
materialised views over the same data, and the cost of refreshing one day when the table
holds 1 year vs 5 years of history (the ratio must stay near 1: cost must not grow with
history). A timing here is a figure to read, not a pass/fail test.
"""

import argparse
import json
import time
from datetime import date, datetime, timedelta

from common import admin_url_default, load_days, throwaway_store

from kline_pipeline.ingest import day_start
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore

SYMBOL = "BTCUSDT"
YEAR_START = date(2025, 1, 1)

MATVIEW_SQL = """
CREATE MATERIALIZED VIEW IF NOT EXISTS bench_mv_{tf} AS
SELECT symbol, date_bin('{minutes} minutes', timestamp, '2000-01-01 00:00+00') AS bucket,
       (array_agg(open ORDER BY timestamp))[1] AS open, max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY timestamp DESC))[1] AS close, sum(volume) AS volume,
       sum(turnover) AS turnover, count(*) AS candle_count
FROM price_klines WHERE timeframe = '5m' GROUP BY 1, 2
"""


def refresh_all(store: KlineStore, start: datetime, end: datetime) -> float:
    t0 = time.perf_counter()
    for rollup in ROLLUPS:
        store.refresh_rollup(rollup=rollup.table, symbol=SYMBOL, start=start, end=end)
    return time.perf_counter() - t0


def truncate_rollups(store: KlineStore) -> None:
    with store.engine().begin() as conn:
        for rollup in ROLLUPS:
            conn.exec_driver_sql(f"TRUNCATE {rollup.table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--days", type=int, default=365, help="days of history for the year figures")
    args = parser.parse_args()
    sim = BybitSimulator()
    with throwaway_store(args.admin_url, "rollups") as store:
        year_start = day_start(YEAR_START)
        year_end = year_start + timedelta(days=args.days)
        candles = load_days(store, sim, SYMBOL, YEAR_START, args.days)
        cold = refresh_all(store, year_start, year_end)       # empty rollup tables: every bucket inserted
        warm = refresh_all(store, year_start, year_end)       # everything present: nothing rewritten
        with store.engine().begin() as conn:
            for rollup in ROLLUPS:
                conn.exec_driver_sql(MATVIEW_SQL.format(tf=rollup.timeframe, minutes=rollup.minutes))
        t0 = time.perf_counter()
        with store.engine().begin() as conn:
            for rollup in ROLLUPS:
                conn.exec_driver_sql(f"REFRESH MATERIALIZED VIEW bench_mv_{rollup.timeframe}")
        matview = time.perf_counter() - t0

        probe_day = year_start + timedelta(days=args.days // 2)

        def one_day(repeats: int = 60) -> float:
            times = sorted(refresh_all(store, probe_day, probe_day + timedelta(days=1)) for _ in range(repeats))
            return times[len(times) // 2]

        day_1y = one_day()
        extra = load_days(store, sim, SYMBOL, YEAR_START - timedelta(days=4 * args.days), 4 * args.days)
        day_5y = one_day()

    print(f"rollups of 1 symbol x {args.days} days ({candles} candles)")
    print(f"{'what':<58} {'figure':>10}")
    print(f"{'refresh six rollups, whole range, empty tables (s)':<58} {cold:>10.3f}")
    print(f"{'refresh six rollups, whole range, already current (s)':<58} {warm:>10.3f}")
    print(f"{'REFRESH MATERIALIZED VIEW x6, same data (s)':<58} {matview:>10.3f}")
    print(f"{'refresh six rollups, one day, 1x history (ms, median)':<58} {day_1y * 1000:>10.1f}")
    print(f"{'refresh six rollups, one day, 5x history (ms, median)':<58} {day_5y * 1000:>10.1f}")
    print(f"{'history ratio 5x/1x':<58} {day_5y / day_1y:>10.2f}")
    print(f"(5x history = {candles + extra} candles)")
    print("RESULT " + json.dumps({"days": args.days, "candles": candles, "cold_s": round(cold, 3),
                                  "warm_s": round(warm, 3), "matview_s": round(matview, 3),
                                  "day_1x_ms": round(day_1y * 1000, 2), "day_5x_ms": round(day_5y * 1000, 2),
                                  "history_ratio": round(day_5y / day_1y, 3)}))


if __name__ == "__main__":
    main()
