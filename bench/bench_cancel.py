"""How long a cancel from the Dagster UI takes to reach CANCELED, over several trials.

    python bench/bench_cancel.py [--trials 5] [--no-cancel-sensor]

One `dagster dev` (fresh local instance in a throwaway PostgreSQL database, the project's daemon
environment from kline_pipeline/instance/env.py, the live_refresh schedule stopped) and the
simulator in its own process answering every request after 1 s. Each trial is
kline_pipeline_tests/test_cancel_ui.py's `cancel_trial`: a six-run backfill of the raw asset and
its rollups launched with the UI's mutation, canceled with the UI's `cancelPartitionBackfill`
once all its runs exist and one has fetched for a few seconds plus a random 0-20 s (so the cancel
lands at a random point of the backfill daemon's 30-second loop), timed until the status reads
CANCELED. `--no-cancel-sensor` stops the `cancel_sensor` first: Dagster's daemon alone, the
figure before it. Prints each trial, then min/median/max and a `RESULT {json}` line.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))  # the tests' process helpers (the bench runs from a checkout, like the tests)

from common import admin_url_default, throwaway_database  # noqa: E402

import dagster as dg  # noqa: E402

from kline_pipeline.instance.env import DAGSTER_ENV  # noqa: E402
from kline_pipeline.partitions import symbols_partitions  # noqa: E402
from kline_pipeline.store import KlineStore  # noqa: E402
from kline_pipeline_tests.processes import LOCATION, dagster_dev, graphql, simulator_process  # noqa: E402
from kline_pipeline_tests.test_cancel_ui import BENCH_LAST, SIMULATOR_ARGS, SYMBOL, cancel_trial  # noqa: E402

STOP_SENSOR = """mutation($loc: String!, $name: String!) { stopSensor(id: $name, sensorSelector: {
  repositoryLocationName: $loc, repositoryName: "__repository__", sensorName: $name}) { __typename } }"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--no-cancel-sensor", action="store_true", help="stop cancel_sensor: the daemon alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kline_bench_cancel_") as tmp, \
            simulator_process(Path(tmp) / "simulator.log", *SIMULATOR_ARGS) as sim_url, \
            throwaway_database(args.admin_url, "cancel") as db_url, \
            throwaway_database(args.admin_url, "cancel_storage") as storage_url:
        os.environ.update({**DAGSTER_ENV, "KLINE_DATABASE_URL": db_url, "BYBIT_BASE_URL": sim_url,
                           "DAGSTER_PG_URL": storage_url, "DAGSTER_HOME": str(Path(tmp) / "home")})
        from kline_pipeline.cli import _default_dagster_home

        with dg.DagsterInstance.from_config(str(_default_dagster_home())) as instance:
            instance.add_dynamic_partitions(symbols_partitions.name, [SYMBOL])
        store = KlineStore(database_url=db_url)
        trials = []
        with dagster_dev(Path(tmp) / "dev.log") as (ui, _):
            if args.no_cancel_sensor:
                sensor = graphql(ui, STOP_SENSOR, {"loc": LOCATION, "name": "cancel_sensor"})
                print(f"cancel_sensor: {sensor['stopSensor']['__typename']}", flush=True)
            for i in range(args.trials):
                trial = cancel_trial(ui, store, BENCH_LAST, fetching_seconds=3 + random.uniform(0, 20))
                whole = set(trial.day_counts.values()) <= {288}
                trials.append(trial.seconds)
                print(f"trial {i + 1}: CANCELED {trial.seconds:.1f} s after the cancel; {len(trial.runs)} runs, "
                      f"{len(trial.created_after)} created after it, {len(trial.stopped_mid_run)} stopped mid-run; "
                      f"{len(trial.day_counts)} days stored, {'all whole' if whole else 'A PARTLY WRITTEN DAY'}",
                      flush=True)
                time.sleep(5)  # let the canceled runs' processes exit before the next backfill
        store.engine().dispose()
    summary = {"cancel_sensor_stopped": args.no_cancel_sensor, "trials": [round(s, 1) for s in trials],
               "min_s": round(min(trials), 1), "median_s": round(statistics.median(trials), 1),
               "max_s": round(max(trials), 1)}
    print(f"UI cancel to CANCELED: min {summary['min_s']} s, median {summary['median_s']} s, max {summary['max_s']} s")
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    main()
