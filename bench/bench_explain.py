"""SQL plans of the two hot queries, with EXPLAIN (ANALYZE, BUFFERS), on 1 symbol x N days.

    python bench/bench_explain.py [--days 365]

1. The rollup refresh of one day (`CALL refresh_price_klines('price_klines_1h', day, day + 1,
   symbol)`): the procedure's nested statements (the INSERT ... SELECT FROM
   price_kline_rollup_compute(...) ON CONFLICT and the DELETE of vanished buckets, plus the
   compute function's own query) are captured with auto_explain (log_analyze, log_buffers,
   log_nested_statements), sent to this client as LOG notices; the tables are current, so this
   is the steady-state refresh the sensor and live refresh do.
2. The gap-holes query (sql/gap_holes.sql) over the whole range, with EXPLAIN (ANALYZE, BUFFERS).

Prints the plans and whether the primary key index (price_klines_pkey) is used, then
`RESULT {json}`.
"""

import argparse
import json
from datetime import date, timedelta

from common import admin_url_default, load_days, throwaway_store

from kline_pipeline.ingest import day_start
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.sqlfiles import sql_text

SYMBOL = "BTCUSDT"
FIRST = date(2025, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    start, end = day_start(FIRST), day_start(FIRST) + timedelta(days=args.days)
    probe = day_start(FIRST + timedelta(days=args.days // 2))
    with throwaway_store(args.admin_url, "explain") as store:
        candles = load_days(store, BybitSimulator(), SYMBOL, FIRST, args.days)
        for rollup in ROLLUPS:
            store.refresh_rollup(rollup=rollup.table, symbol=SYMBOL, start=start, end=end)
        with store.engine().begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        raw = store.engine().raw_connection()
        try:
            conn = raw.driver_connection
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("LOAD 'auto_explain'")
                for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_analyze = on",
                                "auto_explain.log_buffers = on", "auto_explain.log_nested_statements = on",
                                "auto_explain.log_timing = on", "client_min_messages = log"):
                    cur.execute(f"SET {setting}")
                del conn.notices[:]
                cur.execute("CALL refresh_price_klines('price_klines_1h', %s, %s, %s)",
                            (probe, probe + timedelta(days=1), SYMBOL))
                refresh_plans = [n.strip() for n in conn.notices]
                cur.execute("SET client_min_messages = notice")
                cur.execute("SET auto_explain.log_min_duration = -1")
                query = cur.mogrify(sql_text("gap_holes.sql"), {"symbol": SYMBOL, "start": start, "end": end}).decode()
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)
                gap_plan = "\n".join(r[0] for r in cur.fetchall())
        finally:
            raw.close()
    refresh_text = "\n\n".join(refresh_plans)
    result = {
        "days": args.days, "candles": candles, "probe_day": probe.date().isoformat(),
        "refresh_plans": refresh_plans, "gap_plan": gap_plan,
        "refresh_uses_pkey": "price_klines_pkey" in refresh_text,
        "refresh_seq_scan_price_klines": "Seq Scan on price_klines" in refresh_text,
        "gap_uses_pkey": "price_klines_pkey" in gap_plan,
        "gap_seq_scan_price_klines": "Seq Scan on price_klines" in gap_plan,
    }
    print(f"1 symbol x {args.days} days ({candles} candles); refresh of {result['probe_day']} (price_klines_1h)")
    print("--- refresh_price_klines, nested statements (auto_explain) ---")
    print(refresh_text)
    print("--- gap_holes.sql over the whole range ---")
    print(gap_plan)
    print(f"primary key index used: refresh {result['refresh_uses_pkey']}, gap holes {result['gap_uses_pkey']}")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
