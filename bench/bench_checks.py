"""Check and gap-report benchmark: 1 symbol x 365 days with a few holes.

    python bench/bench_checks.py [--days 365]

Prints the gap report over the whole range (target ≤ 1 s) and one partition's
`no_missing_candles` (target ≤ 50 ms), medians of repeated runs. Figures, not tests.
"""

import argparse
import json
import time
from datetime import date, datetime, timedelta, timezone

from common import admin_url_default, load_days, throwaway_store

from kline_pipeline.checks import Facts
from kline_pipeline.checks.rules import no_missing_candles, valid_ohlcv
from kline_pipeline.gaps import gap_report
from kline_pipeline.ingest import day_start
from kline_pipeline.simulator import BybitSimulator

SYMBOL = "BTCUSDT"
FIRST = date(2025, 1, 1)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    now = datetime.now(timezone.utc)
    start, end = day_start(FIRST), day_start(FIRST) + timedelta(days=args.days)
    with throwaway_store(args.admin_url, "checks") as store:
        candles = load_days(store, BybitSimulator(), SYMBOL, FIRST, args.days)
        with store.engine().begin() as conn:  # a hole every 10th day, so the report has work to do
            conn.exec_driver_sql(
                "DELETE FROM price_klines WHERE symbol = %(s)s AND extract(doy FROM timestamp)::int %% 10 = 0 "
                "AND extract(hour FROM timestamp) = 3", {"s": SYMBOL})
        report = gap_report(store, symbol=SYMBOL, start=start, end=end, now=now)
        year = median_seconds(lambda: gap_report(store, symbol=SYMBOL, start=start, end=end, now=now), 7)
        key = f"{FIRST + timedelta(days=args.days // 2):%Y-%m-%d}|{SYMBOL}"
        # One partition alone, as in a single-partition run: its own Facts (fresh queries) each time.
        one = median_seconds(lambda: no_missing_candles(Facts(store, [key], now), key), 50)
        valid = median_seconds(lambda: valid_ohlcv(Facts(store, [key], now), key), 50)
    print(f"1 symbol x {args.days} days ({candles} candles, {len(report.spans)} gap spans, {report.missing} missing)")
    print(f"{'what':<52} {'figure':>9} {'target':>8}")
    print(f"{'gap report over the whole range (ms, median of 7)':<52} {year * 1000:>9.1f} {'1000':>8}")
    print(f"{'no_missing_candles, one partition (ms, median of 50)':<52} {one * 1000:>9.1f} {'50':>8}")
    print(f"{'valid_ohlcv, one partition (ms, median of 50)':<52} {valid * 1000:>9.1f} {'-':>8}")
    print("RESULT " + json.dumps({"days": args.days, "candles": candles, "gap_spans": len(report.spans),
                                  "gap_report_ms": round(year * 1000, 2), "no_missing_candles_ms": round(one * 1000, 2),
                                  "valid_ohlcv_ms": round(valid * 1000, 2)}))


if __name__ == "__main__":
    main()
