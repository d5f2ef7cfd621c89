"""Export benchmark: `export_klines` (the code `kline-pipeline export` runs) per format and range length.

    python bench/bench_export.py [--years 4] [--repeat 3]   # --days N instead: a tiny run (the smoke test)

Loads --years of one symbol's 5m candles (the simulator's, written directly) into a throwaway
database, then exports 1 year, 3 years and all years to .parquet, .feather and .csv, each export in a
fresh process (so its peak RSS is its own), --repeat times. Prints, per format and range, the best
candles/s of the repeats (the whole call: gap report, data, manifest, SHA-256; the best is the run
least disturbed by other work on a shared machine), the median CPU seconds the export cost — this
process plus the PostgreSQL backends it used, read from /proc when the server runs on this machine,
a figure that does not depend on the load — and the largest peak RSS: memory should not grow with
the range (the rows are streamed in chunks). A timing here is a figure to read, not a pass/fail test.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

SYMBOL = "BTCUSDT"
FIRST_DAY = date(2021, 1, 1)


class _BackendCpu:
    """CPU seconds of the PostgreSQL backends on `database`, sampled from /proc every 20 ms in a
    thread: the export's connections beyond the pool's size close (and their backends exit) before
    it returns, so a reading at the end alone would miss them. A backend's last < 20 ms are missed.
    `total` is None when the server's /proc is not readable here (a remote database)."""

    def __init__(self, db_url: str) -> None:
        import threading

        import psycopg2
        import sqlalchemy as sa

        url = sa.make_url(db_url)
        self._conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                                      dbname=url.database)
        self._conn.autocommit = True
        self._database = url.database
        self._seen: dict[int, tuple[float, float]] = {}  # pid -> (first reading, last reading)
        self._readable = True
        self._started = False  # a backend first seen later was started meanwhile: all its CPU counts
        self.sampler_cpu = 0.0
        """CPU seconds of the sampling thread (in this process's figures: subtract it)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sample()
        self._started = True
        self._thread.start()

    def _sample(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                        (self._database,))
            pids = [pid for (pid,) in cur.fetchall()]
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:  # exited since pg_stat_activity listed it
                continue
            except OSError:
                self._readable = False
                return
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
            self._seen[pid] = (self._seen.get(pid, (cpu if not self._started else 0.0, 0.0))[0], cpu)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()
        self.sampler_cpu = time.thread_time()

    def total(self) -> float | None:
        """Stop sampling; the CPU seconds the backends used since this object was made."""
        self._stop.set()
        self._thread.join()
        self._sample()
        self._conn.close()
        return sum(last - first for first, last in self._seen.values()) if self._readable else None


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
        backends = _BackendCpu(db_url)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        done = export_klines(store, symbol=SYMBOL, timeframe="5m", start=start, end=start + timedelta(days=days),
                             out=out, now=datetime.now(timezone.utc))
        seconds = time.perf_counter() - t0
        after_usage = resource.getrusage(resource.RUSAGE_SELF)
        server = backends.total()
        size = out.stat().st_size
    client = after_usage.ru_utime + after_usage.ru_stime - usage.ru_utime - usage.ru_stime - backends.sampler_cpu
    return {"format": fmt, "days": days, "candles": done.rows, "seconds": round(seconds, 3),
            "candles_per_s": round(done.rows / seconds), "file_mb": round(size / 2**20, 1),
            "cpu_client_s": round(client, 3), "cpu_server_s": None if server is None else round(server, 3),
            "peak_rss_mb": round(after_usage.ru_maxrss / 1024, 1)}


def _summary(runs: list[dict]) -> dict:
    """The repeats of one (format, days): best speed, median CPU, largest peak RSS."""
    best = max(runs, key=lambda r: r["candles_per_s"])
    cpu = [r["cpu_client_s"] + r["cpu_server_s"] for r in runs if r["cpu_server_s"] is not None]
    return {**best, "repeats": len(runs), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "median_candles_per_s": round(statistics.median(r["candles_per_s"] for r in runs)),
            "cpu_s": round(statistics.median(cpu), 3) if cpu else None,
            "candles_per_cpu_s": round(best["candles"] / statistics.median(cpu)) if cpu else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument("--days", type=int, help="load this many days instead of --years (exports 1 day and all)")
    parser.add_argument("--repeat", type=int, default=3, help="exports per format and range, each in a fresh process")
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
        with store.engine().connect() as conn:  # a store that has been vacuumed, as autovacuum does
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE price_klines")
        store.engine().dispose()
        sizes = [min(365, max(1, total_days // 4)), *([3 * 365] if total_days >= 4 * 365 else []), total_days]
        for days in sizes:
            for fmt in ("parquet", "feather", "csv"):
                runs = []
                for _ in range(args.repeat):
                    out = subprocess.run([sys.executable, __file__, "--stage", fmt, "--db-url", db_url,
                                          "--stage-days", str(days)], check=True, capture_output=True, text=True).stdout
                    runs.append(json.loads(out.strip().splitlines()[-1]))
                rows.append(_summary(runs))
    load = os.getloadavg()
    print(f"1 symbol, 5m candles, export_klines end to end (gap report, rows, manifest, SHA-256); best of "
          f"{args.repeat} fresh processes; load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'format':<8} {'days':>5} {'candles':>9} {'seconds':>8} {'candles/s':>10} {'median/s':>10} {'CPU s':>6} "
          f"{'per CPU s':>10} {'file MB':>8} {'peak RSS MB':>11}")
    for r in rows:
        cpu = "-" if r["cpu_s"] is None else f"{r['cpu_s']:.2f}"
        per_cpu = "-" if r["candles_per_cpu_s"] is None else f"{r['candles_per_cpu_s']:,}"
        print(f"{r['format']:<8} {r['days']:>5} {r['candles']:>9} {r['seconds']:>8} {r['candles_per_s']:>10,} "
              f"{r['median_candles_per_s']:>10,} {cpu:>6} {per_cpu:>10} {r['file_mb']:>8} {r['peak_rss_mb']:>11}")
    print("RESULT " + json.dumps({"days": total_days, "repeat": args.repeat, "load": load, "exports": rows}))


if __name__ == "__main__":
    main()
