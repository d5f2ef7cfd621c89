"""Live-tick benchmark: the real `live_refresh_job` for N symbols against the simulator (own process).

    python bench/bench_live.py [--symbols 10,200] [--history-days 730] [--history-symbols 10]

For each size: a Dagster instance on the pooled PostgreSQL storage of the local template (a
throwaway database), a throwaway candle database, the simulator listing N symbols. The job runs
in this process with the pipeline's clock set to three consecutive candle closes: the first tick
(two days per symbol: it materializes three days of every asset per symbol, with every check
result), then two steady ticks (nothing to record unless something changed). Printed per tick:
wall time, exchange requests, Dagster events written, and the newest candle's age. Then, for
`--history-symbols` symbols, a steady tick with and without `--history-days` of stored history:
the ratio shows whether a tick's cost grows with history (it must not). Figures, not tests.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import admin_url_default, load_days, throwaway_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' process helpers
from kline_pipeline_tests.processes import free_port, stop_group, wait_for_http  # noqa: E402

import dagster as dg  # noqa: E402

from kline_pipeline import clock  # noqa: E402
from kline_pipeline.bybit import BybitClient  # noqa: E402
from kline_pipeline.instance.env import DAGSTER_ENV  # noqa: E402
from kline_pipeline.models import from_ms, grid_floor, to_ms  # noqa: E402
from kline_pipeline.partitions import symbols_partitions  # noqa: E402
from kline_pipeline.schedules import live_refresh_job  # noqa: E402
from kline_pipeline.simulator import BybitSimulator  # noqa: E402
from kline_pipeline.store import KlineStore  # noqa: E402

LISTED = "2020-01-01"
TEMPLATE = Path(__file__).resolve().parent.parent / "kline_pipeline" / "instance" / "local.yaml"


def run_tick(job: dg.JobDefinition, instance: dg.DagsterInstance, store: KlineStore, symbols: list[str],
             at: datetime) -> dict:
    clock.utcnow = lambda: at  # the pipeline's one clock (the simulator serves real time, which is later)
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    wall = time.perf_counter() - t0
    materializations = sum(1 for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION")
    newest = min(store.last_candle(s) for s in symbols)
    return {"wall_s": round(wall, 2), "success": result.success,
            "events": len(instance.get_records_for_run(result.run_id, limit=100_000).records),
            "materializations": materializations,
            "check_results": len(result.get_asset_check_evaluations()),
            "oldest_newest_candle_age_min": round((at - newest).total_seconds() / 60 - 5, 2)}


@contextmanager
def live_setup(admin_url: str, count: int, workdir: Path, label: str) -> Iterator[tuple]:
    """(job, instance, store, symbols): the simulator listing `count` symbols in its own process, a
    throwaway candle database and a Dagster instance on the local template's storage (throwaway)."""
    symbols = [f"SYM{i}USDT" for i in range(count)]
    port = free_port()
    log = workdir / f"simulator_{label}.log"
    with log.open("wb") as out:
        sim = subprocess.Popen([sys.executable, "-m", "kline_pipeline.cli", "simulate-exchange", "--port", str(port),
                                *[a for s in symbols for a in ("--instrument", f"{s}:{LISTED}")]],
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v5/market/time", sim, log, timeout=30)
        with throwaway_database(admin_url, f"live_candles_{label}") as candles, \
                throwaway_database(admin_url, f"live_dagster_{label}") as storage, \
                tempfile.TemporaryDirectory() as home:
            os.environ["DAGSTER_PG_URL"] = storage
            Path(home, "dagster.yaml").write_text(TEMPLATE.read_text())
            store = KlineStore(database_url=candles)
            job = dg.Definitions(jobs=[live_refresh_job], resources={
                "bybit": BybitClient(base_url=f"http://127.0.0.1:{port}"), "kline_store": store,
            }).resolve_job_def(live_refresh_job.name)
            with dg.DagsterInstance.from_config(home) as instance:
                instance.add_dynamic_partitions(symbols_partitions.name, symbols)
                yield job, instance, store, symbols
            store.engine().dispose()
    finally:
        stop_group(sim)


def measure(admin_url: str, count: int, workdir: Path) -> dict:
    """The first tick and two steady ticks of `count` symbols."""
    with live_setup(admin_url, count, workdir, str(count)) as (job, instance, store, symbols):
        close = from_ms(grid_floor(to_ms(datetime.now(timezone.utc)))) - timedelta(minutes=10)
        ticks = [run_tick(job, instance, store, symbols, close + timedelta(minutes=5 * i, seconds=15))
                 for i in range(3)]
    return {"symbols": count, "first": ticks[0], "steady": ticks[1:]}


def history_ratio(admin_url: str, count: int, days: int, workdir: Path) -> dict:
    """A steady tick of `count` symbols with ~2 days stored, then with `days` more of history."""
    with live_setup(admin_url, count, workdir, "history") as (job, instance, store, symbols):
        close = from_ms(grid_floor(to_ms(datetime.now(timezone.utc)))) - timedelta(minutes=30)
        run_tick(job, instance, store, symbols, close + timedelta(seconds=15))
        walls = [run_tick(job, instance, store, symbols, close + timedelta(minutes=5 * i, seconds=15))["wall_s"]
                 for i in (1, 2, 3)]
        local = BybitSimulator(instruments={s: 1577836800000 for s in symbols})
        first_day = (close - timedelta(days=3 + days)).date()
        loaded = sum(load_days(store, local, s, first_day, days) for s in symbols)
        walls_history = [run_tick(job, instance, store, symbols, close + timedelta(minutes=5 * i, seconds=15))[
            "wall_s"] for i in (4, 5, 6)]
    without, with_history = sorted(walls)[1], sorted(walls_history)[1]
    return {"symbols": count, "history_days": days, "loaded": loaded, "steady_s": without,
            "steady_with_history_s": with_history, "ratio": round(with_history / without, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--symbols", default="10,200", help="comma-separated sizes")
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument("--history-symbols", type=int, default=10)
    args = parser.parse_args()
    for name, value in DAGSTER_ENV.items():  # as a run worker under `kline-pipeline dev` has them
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix="kline_bench_live_") as tmp:
        sizes = [measure(args.admin_url, int(n), Path(tmp)) for n in args.symbols.split(",")]
        history = history_ratio(args.admin_url, args.history_symbols, args.history_days, Path(tmp))
    print(f"{'tick':<34} {'wall s':>8} {'events':>8} {'mats':>6} {'checks':>7} {'oldest newest candle (min)':>27}")
    for size in sizes:
        for label, tick in [("first", size["first"]), *[("steady", t) for t in size["steady"]]]:
            print(f"{size['symbols']:>4} symbols, {label + ' tick':<21} {tick['wall_s']:>8} {tick['events']:>8} "
                  f"{tick['materializations']:>6} {tick['check_results']:>7} {tick['oldest_newest_candle_age_min']:>27}")
    print(f"history: {history['symbols']} symbols, steady tick {history['steady_s']} s without, "
          f"{history['steady_with_history_s']} s with +{history['history_days']} days ({history['loaded']} candles): "
          f"ratio {history['ratio']}")
    print("RESULT " + json.dumps({"sizes": sizes, "history": history}))


if __name__ == "__main__":
    main()
