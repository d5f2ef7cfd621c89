"""Live-tick benchmark: one tick for 10 symbols against the simulator (its own process).

    python bench/bench_live.py [--symbols 10] [--history-days 730]

Prints requests, rows changed and wall time (median of 5) of a steady-state tick (after the first),
first with nearly empty tables, then again after loading `--history-days` of history for every
symbol: the ratio shows whether a tick's cost grows with history (it must not). Figures only.
"""

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

from common import admin_url_default, load_days, throwaway_store

from kline_pipeline.bybit import BybitClient
from kline_pipeline.live import DEFAULT_LOOKBACK_MINUTES, refresh_symbol
from kline_pipeline.simulator import BybitSimulator

LISTED = "2020-01-01"


def one_tick(bybit: BybitClient, store, symbols: list[str], now: datetime) -> tuple[int, int, float]:
    """Requests, rows changed and seconds of one tick over all symbols."""
    before = bybit.requests_made
    t0 = time.perf_counter()
    changed = 0
    for symbol in symbols:
        tick = refresh_symbol(bybit=bybit, store=store, symbol=symbol, now=now, lookbacks=DEFAULT_LOOKBACK_MINUTES,
                              refetch=timedelta(minutes=max(DEFAULT_LOOKBACK_MINUTES.values())))
        changed += tick.ingest.changed
    return bybit.requests_made - before, changed, time.perf_counter() - t0


def median_tick(bybit: BybitClient, store, symbols: list[str], now: datetime, repeats: int = 5) -> tuple[int, int, float]:
    """The tick at `now` repeated (each repeat is a steady-state tick): the first tick's requests
    and changed rows, the median wall time (one tick is ~0.25 s: a single sample is noise)."""
    ticks = [one_tick(bybit, store, symbols, now) for _ in range(repeats)]
    return ticks[0][0], ticks[0][1], sorted(t[2] for t in ticks)[repeats // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--history-days", type=int, default=730)
    args = parser.parse_args()
    symbols = [f"SYM{i}USDT" for i in range(args.symbols)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sim = subprocess.Popen(
        [sys.executable, "-m", "kline_pipeline.cli", "simulate-exchange", "--port", str(port),
         *[a for s in symbols for a in ("--instrument", f"{s}:{LISTED}")]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    local = BybitSimulator(instruments={s: 1577836800000 for s in symbols})  # same candles, for loading history
    bybit = BybitClient(base_url=f"http://127.0.0.1:{port}", requests_per_second=1000.0)
    rows = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v5/market/time", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with throwaway_store(args.admin_url, "live") as store:
            now = datetime.now(timezone.utc)
            one_tick(bybit, store, symbols, now - timedelta(minutes=10))  # first tick: loads two days
            rows.append(("steady tick, ~2 days stored", *median_tick(bybit, store, symbols, now - timedelta(minutes=5))))
            history_end = (now - timedelta(days=3)).date()
            t0 = time.perf_counter()
            loaded = sum(load_days(store, local, s, history_end - timedelta(days=args.history_days), args.history_days)
                         for s in symbols)
            load_s = time.perf_counter() - t0
            rows.append((f"steady tick, +{args.history_days} days stored", *median_tick(bybit, store, symbols, now)))
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    print(f"{args.symbols} symbols; history loaded: {loaded} candles in {load_s:.1f} s")
    print(f"{'tick':<34} {'requests':>8} {'rows changed':>12} {'wall ms':>8}")
    for label, requests, changed, seconds in rows:
        print(f"{label:<34} {requests:>8} {changed:>12} {seconds * 1000:>8.1f}")
    print(f"history ratio (with / without): {rows[1][3] / rows[0][3]:.2f}")
    print("RESULT " + json.dumps({"symbols": args.symbols, "history_days": args.history_days, "loaded": loaded,
                                  "ticks": [{"label": label, "requests": requests, "changed": changed,
                                             "ms": round(seconds * 1000, 1)} for label, requests, changed, seconds in rows],
                                  "history_ratio": round(rows[1][3] / rows[0][3], 3)}))


if __name__ == "__main__":
    main()
