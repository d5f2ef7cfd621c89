"""Export benchmark: `export_klines` (the code `kline-pipeline export` runs) per format and range length.

    python bench/bench_export.py [--years 4]     # --days N instead: a tiny run (the smoke test)

Loads --years of one symbol's 5m candles (the simulator's, written directly) into a throwaway
database, then exports 1 year and all years to .parquet, .feather and .csv, each in a fresh process
so its peak RSS is its own. Prints candles/s (the whole call: gap report, data, manifest, SHA-256)
and peak RSS: memory should not grow with the range (the rows are streamed in chunks).
A timing here is a figure to read, not a pass/fail test.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

SYMBOL = "BTCUSDT"
FIRST_DAY = date(2021, 1, 1)


def _stage(db_url: str, fmt: str, days: int) -> dict:
    """In a child process: one export, its figures."""
    from kline_pipeline.export import export_klines
    from kline_pipeline.ingest import day_start
    from kline_pipeline.store import KlineStore

    store = KlineStore(database_url=db_url)
    start = day_start(FIRST_DAY)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / f"bench.{fmt}"
        store.engine()  # connect and apply the schema outside the timing
        t0 = time.perf_counter()
        done = export_klines(store, symbol=SYMBOL, timeframe="5m", start=start, end=start + timedelta(days=days),
                             out=out, now=datetime.now(timezone.utc))
        seconds = time.perf_counter() - t0
        size = out.stat().st_size
    return {"format": fmt, "days": days, "candles": done.rows, "seconds": round(seconds, 3),
            "candles_per_s": round(done.rows / seconds), "file_mb": round(size / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument("--days", type=int, help="load this many days instead of --years (exports 1 day and all)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--stage-days", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(_stage(args.db_url, args.stage, args.stage_days)))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import admin_url_default, load_days, throwaway_database

    from kline_pipeline.simulator import BybitSimulator
    from kline_pipeline.store import KlineStore

    total_days = args.days or 365 * args.years
    rows = []
    with throwaway_database(admin_url_default(), "export") as db_url:
        store = KlineStore(database_url=db_url)
        t0 = time.perf_counter()
        # Listed before the range, so every candle of it is expected and present.
        sim = BybitSimulator(instruments={SYMBOL: 0})
        loaded = load_days(store, sim, SYMBOL, FIRST_DAY, total_days)
        store.engine().dispose()
        print(f"loaded {loaded:,} candles in {time.perf_counter() - t0:.1f} s", flush=True)
        for days in (min(365, max(1, total_days // 4)), total_days):
            for fmt in ("parquet", "feather", "csv"):
                out = subprocess.run([sys.executable, __file__, "--stage", fmt, "--db-url", db_url, "--stage-days", str(days)],
                                     check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
    print("1 symbol, 5m candles, export_klines end to end (gap report, rows, manifest, SHA-256)")
    print(f"{'format':<8} {'days':>5} {'candles':>9} {'seconds':>8} {'candles/s':>10} {'file MB':>8} {'peak RSS MB':>11}")
    for r in rows:
        print(f"{r['format']:<8} {r['days']:>5} {r['candles']:>9} {r['seconds']:>8} {r['candles_per_s']:>10,} "
              f"{r['file_mb']:>8} {r['peak_rss_mb']:>11}")
    print("RESULT " + json.dumps({"days": total_days, "exports": rows}))


if __name__ == "__main__":
    main()
