"""Ingest benchmark: 1 symbol x N days from the simulator into PostgreSQL, inside one process.

    python bench/bench_ingest.py [--days 365] [--database-url URL]
    python bench/bench_ingest.py --hand-trigger [--rounds 3]   # P2 with and without the hand-change trigger

Prints candles/s, requests and peak RSS for the end-to-end path (`ingest_days`, the code the
asset runs), with its floors measured in the same run: fetch only (HTTP + parsing +
validation) and write only (COPY + upsert per day). Each stage runs in a fresh process so its
peak RSS is its own. The simulator runs in another process, like a real exchange would.
A timing here is a figure to read, not a pass/fail test.

`--hand-trigger` measures what the statement-level hand-change trigger
(sql/schema_010_hand_changes.sql) costs the ingest: the end-to-end stage alternately without the
three triggers (dropped in that stage's database) and with them, `--rounds` times each, medians.
"""

import statistics

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

SYMBOL = "BTCUSDT"
FIRST_DAY = date(2025, 1, 1)
DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HAND_TRIGGERS = ("price_klines_hand_insert", "price_klines_hand_update", "price_klines_hand_delete")


def _stage(stage: str, days: int, base_url: str, db_url: str, rps: float, trigger: bool = True) -> dict:
    """Run in a child process: one stage, returning its figures."""
    from kline_pipeline.bybit import BybitClient
    from kline_pipeline.ingest import day_start, ingest_days
    from kline_pipeline.store import KlineStore

    bybit = BybitClient(base_url=base_url, requests_per_second=rps)
    store = KlineStore(database_url=db_url)
    with store.engine().begin() as conn:  # the schema (and its triggers) are applied by engine()
        conn.exec_driver_sql("TRUNCATE price_klines")
        if not trigger:
            for name in HAND_TRIGGERS:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON price_klines")
        triggers = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'price_klines'::regclass AND NOT tgisinternal").scalar()
    start = day_start(FIRST_DAY)
    end = start + timedelta(days=days)
    now = datetime.now(timezone.utc)
    all_days = [FIRST_DAY + timedelta(days=i) for i in range(days)]
    t0 = time.perf_counter()
    if stage == "fetch":
        candles = sum(len(w.candles) for w in bybit.iter_kline_windows(symbol=SYMBOL, start=start, end=end, now=now))
        requests = bybit.requests_made
    elif stage == "write":
        candles_all = bybit.fetch_klines(symbol=SYMBOL, start=start, end=end, now=now)
        by_day: dict[date, list] = {}
        for c in candles_all:
            by_day.setdefault(c.start.date(), []).append(c)
        t0 = time.perf_counter()  # only the writes are timed
        with store.day_writer() as writer:
            for day in all_days:
                writer.write_day(symbol=SYMBOL, start=day_start(day), end=day_start(day) + timedelta(days=1),
                                 candles=by_day.get(day, []))
        candles, requests = len(candles_all), 0
    else:
        report = ingest_days(bybit=bybit, store=store, symbol=SYMBOL, days=all_days, now=now)
        candles, requests = report.candles, report.requests
    seconds = time.perf_counter() - t0
    stored = store.summary(symbol=SYMBOL, start=start, end=end).rows
    return {
        "stage": stage + ("" if trigger else "-no-trigger"), "rps_limit": rps, "triggers": triggers, "candles": candles, "stored": stored, "requests": requests,
        "seconds": round(seconds, 3), "candles_per_s": round(candles / seconds) if seconds else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _upsert_only(db_url: str, rounds: int) -> dict[str, float]:
    """The write statement alone, in SQL: one upsert of 105,120 candles into an empty price_klines
    as a DayWriter's connection runs it (kline.pipeline_write on), without and with the three
    triggers, alternately; median seconds. Free of the fetch and of Python, so the capture of the
    transition tables is all that differs."""
    from kline_pipeline.sqlfiles import sql_text
    from kline_pipeline.store import KlineStore

    store = KlineStore(database_url=db_url)
    raw = store.engine().raw_connection()
    conn, times = raw.driver_connection, {"upsert-no-trigger": [], "upsert": []}
    upsert = ("INSERT INTO price_klines SELECT 'BTCUSDT', '5m', t, 1, 2, 1, 2, 3, 4 FROM generate_series("
              "'2025-01-01'::timestamptz, '2025-01-01'::timestamptz + interval '5 minutes' * 105119, '5 minutes') AS t "
              "ON CONFLICT (symbol, timeframe, timestamp) DO UPDATE SET open = EXCLUDED.open")
    try:
        with conn.cursor() as cur:
            cur.execute(sql_text("pipeline_write_begin.sql"), {"is_local": False})
            for round_ in range(rounds):
                for trigger in ((False, True) if round_ % 2 == 0 else (True, False)):
                    cur.execute("TRUNCATE price_klines")
                    if trigger:
                        cur.execute(sql_text("schema_010_hand_changes.sql"))
                    for name in () if trigger else HAND_TRIGGERS:
                        cur.execute(f"DROP TRIGGER IF EXISTS {name} ON price_klines")
                    conn.commit()
                    t0 = time.perf_counter()
                    cur.execute(upsert)
                    conn.commit()
                    times["upsert" if trigger else "upsert-no-trigger"].append(time.perf_counter() - t0)
            cur.execute("TRUNCATE price_klines")
            cur.execute(sql_text("schema_010_hand_changes.sql"))
        conn.commit()
    finally:
        raw.close()
        store.engine().dispose()
    return {name: statistics.median(values) for name, values in times.items()}


def _fresh_database(admin_url: str) -> tuple[str, sa.Engine, str]:
    name = f"kline_bench_{os.getpid()}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False), admin, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--admin-url", default=os.environ.get("KLINE_TEST_PG_URL", DEFAULT_ADMIN_URL),
                        help="PostgreSQL server on which a throwaway benchmark database is created")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--rps", type=float, default=10_000.0, help=argparse.SUPPRESS)
    parser.add_argument("--no-trigger", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hand-trigger", action="store_true",
                        help="measure the ingest with and without the hand-change trigger instead")
    parser.add_argument("--rounds", type=int, default=3, help="with --hand-trigger: runs of each variant")
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(_stage(args.stage, args.days, args.base_url, args.db_url, args.rps, not args.no_trigger)))
        return

    port = _free_port()
    sim = subprocess.Popen([sys.executable, "-m", "kline_pipeline.cli", "simulate-exchange", "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    db_url, admin, name = _fresh_database(args.admin_url)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base_url}/v5/market/time", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        rows = []
        # End to end twice: unthrottled (our own cost) and at the default 20 requests/s budget.
        plan = [("fetch", 10_000.0, True), ("write", 10_000.0, True), ("ingest", 10_000.0, True), ("ingest", 20.0, True)]
        if args.hand_trigger:  # alternating, so load on the machine hits both variants alike
            plan = [(stage, 10_000.0, trigger) for round_ in range(args.rounds) for stage in ("write", "ingest")
                    for trigger in ((False, True) if round_ % 2 == 0 else (True, False))]  # either goes first
        for stage, rps, trigger in plan:
            out = subprocess.run(
                [sys.executable, __file__, "--stage", stage, "--days", str(args.days), "--base-url", base_url,
                 "--db-url", db_url, "--rps", str(rps), *([] if trigger else ["--no-trigger"])],
                check=True, capture_output=True, text=True,
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        sql = _upsert_only(db_url, max(args.rounds, 6)) if args.hand_trigger else {}
    finally:
        sim.terminate()
        sim.wait(timeout=10)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"1 symbol x {args.days} days, simulator in its own process, PostgreSQL {sa.make_url(db_url).host or 'socket'}")
    print(f"{'stage':<8} {'rate limit':>10} {'candles':>8} {'stored':>7} {'requests':>8} {'seconds':>8} "
          f"{'candles/s':>10} {'peak RSS MB':>11}")
    for r in rows:
        print(f"{r['stage']:<8} {r['rps_limit']:>10g} {r['candles']:>8} {r['stored']:>7} {r['requests']:>8} "
              f"{r['seconds']:>8} {r['candles_per_s']:>10} {r['peak_rss_mb']:>11}")
    if args.hand_trigger:
        medians = {}
        for stage in ("write", "write-no-trigger", "ingest", "ingest-no-trigger"):
            medians[stage] = statistics.median(r["candles_per_s"] for r in rows if r["stage"] == stage)
            print(f"median {stage:<18} {medians[stage]:>10,.0f} candles/s over {args.rounds} runs")
        for stage in ("write", "ingest"):
            print(f"hand-change trigger costs {stage}: {100 * (1 - medians[stage] / medians[stage + '-no-trigger']):+.1f} %"
                  " of throughput (negative: faster with it)")
        for name, seconds in sql.items():
            print(f"median {name:<18} {seconds:>10.3f} s for one 105,120-row upsert in SQL")
        print(f"hand-change trigger costs the upsert statement: {100 * (sql['upsert'] / sql['upsert-no-trigger'] - 1):+.1f} %")
    print("RESULT " + json.dumps({"days": args.days, "stages": rows}))


if __name__ == "__main__":
    main()
