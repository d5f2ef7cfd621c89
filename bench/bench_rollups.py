"""Rollup benchmark: refresh all six rollups of 1 symbol x 365 days (105,120 candles).

    python bench/bench_rollups.py [--admin-url URL]

Side by side in the same run: REFRESH MATERIALIZED VIEW of six equivalent plain-PostgreSQL
materialised views over the same data, and the cost of refreshing one day when the table
holds 1 year vs 5 years of history (the ratio must stay near 1: cost must not grow with
history). A timing here is a figure to read, not a pass/fail test.
"""

import argparse
import os
import time
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

from kline_pipeline.ingest import day_start
from kline_pipeline.models import Candle, to_ms
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore

SYMBOL = "BTCUSDT"
YEAR_START = date(2025, 1, 1)
DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

MATVIEW_SQL = """
CREATE MATERIALIZED VIEW IF NOT EXISTS bench_mv_{tf} AS
SELECT symbol, date_bin('{minutes} minutes', timestamp, '2000-01-01 00:00+00') AS bucket,
       (array_agg(open ORDER BY timestamp))[1] AS open, max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY timestamp DESC))[1] AS close, sum(volume) AS volume,
       sum(turnover) AS turnover, count(*) AS candle_count
FROM price_klines WHERE timeframe = '5m' GROUP BY 1, 2
"""


def load_days(store: KlineStore, sim: BybitSimulator, first: date, days: int) -> int:
    """Write `days` days of the simulator's candles directly (no HTTP: this benchmark is about SQL)."""
    total = 0
    with store.day_writer() as writer:
        for i in range(days):
            start = day_start(first + timedelta(days=i))
            rows = sim.candles(SYMBOL, to_ms(start), to_ms(start + timedelta(days=1)))
            candles = [Candle(int(r[0]), *r[1:7]) for r in rows]
            writer.write_day(symbol=SYMBOL, start=start, end=start + timedelta(days=1), candles=candles)
            total += len(candles)
    return total


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
    parser.add_argument("--admin-url", default=os.environ.get("KLINE_TEST_PG_URL", DEFAULT_ADMIN_URL))
    args = parser.parse_args()
    name = f"kline_bench_rollups_{os.getpid()}"
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    store = KlineStore(database_url=sa.make_url(args.admin_url).set(database=name).render_as_string(hide_password=False))
    sim = BybitSimulator()
    try:
        year_start = day_start(YEAR_START)
        year_end = year_start + timedelta(days=365)
        candles = load_days(store, sim, YEAR_START, 365)
        with store.engine().begin() as conn:
            conn.exec_driver_sql("ANALYZE price_klines")

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

        probe_day = day_start(date(2025, 6, 15))
        def one_day(repeats: int = 60) -> float:
            times = []
            for _ in range(repeats):
                times.append(refresh_all(store, probe_day, probe_day + timedelta(days=1)))
            return sorted(times)[len(times) // 2]

        day_1y = one_day()
        extra = load_days(store, sim, date(2021, 1, 1), 4 * 365)  # four more years of history
        with store.engine().begin() as conn:
            conn.exec_driver_sql("ANALYZE price_klines")
        day_5y = one_day()
    finally:
        store.engine().dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"rollups of 1 symbol x 365 days ({candles} candles); PostgreSQL at {sa.make_url(args.admin_url).host}")
    print(f"{'what':<58} {'figure':>10}")
    print(f"{'refresh six rollups, year, empty tables (s)':<58} {cold:>10.3f}")
    print(f"{'refresh six rollups, year, already current (s)':<58} {warm:>10.3f}")
    print(f"{'REFRESH MATERIALIZED VIEW x6, same data (s)':<58} {matview:>10.3f}")
    print(f"{'refresh six rollups, one day, 1 year stored (ms, median)':<58} {day_1y * 1000:>10.1f}")
    print(f"{'refresh six rollups, one day, 5 years stored (ms, median)':<58} {day_5y * 1000:>10.1f}")
    print(f"{'history ratio 5y/1y':<58} {day_5y / day_1y:>10.2f}")
    print(f"(5 years = {candles + extra} candles)")


if __name__ == "__main__":
    main()
