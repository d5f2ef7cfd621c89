"""A backfill canceled from the Dagster UI ends CANCELED within a minute, with whole days only.

Real processes: the bundled simulator in its own process (every request answered after 1 s, so
runs are mid-fetch when the cancel comes), `dagster dev` (webserver, daemon, code server) on a
fresh local instance in PostgreSQL, started with the project's daemon environment. The test
launches a four-run backfill of the raw asset and its rollups as the UI does, waits until the
daemon has created all four runs and one has been fetching for a few seconds, then sends the UI's
own `cancelPartitionBackfill` mutation. It must be CANCELED within 60 s (kline_pipeline/cancel_sensor.py:
the cancel sensor stops the runs within seconds and marks the backfill CANCELED once they have
ended), no run may be created after the cancel, every run must have ended, and every stored day
holds 0 or 288 candles.

The cancel landing while the daemon is still creating runs (at most the one being created is
queued, then canceled) is the reliability suite's case (reliability/test_cancel.py).
`bench/bench_cancel.py` repeats `cancel_trial` to measure the latency's spread.
"""

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import dagster as dg
import pytest

from kline_pipeline.assets import PARTITIONS_PER_RUN
from kline_pipeline.instance.setup import dagster_home
from kline_pipeline.instance.env import DAGSTER_ENV
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.store import KlineStore
from kline_pipeline_tests.processes import dagster_dev, graphql, launch_backfill, simulator_process, wait_until

ASSETS = ["price_klines_5m", *(rollup.table for rollup in ROLLUPS)]
SYMBOL = "BTCUSDT"
FIRST = date(2020, 4, 1)
BENCH_LAST = date(2021, 9, 18)
"""bench/bench_cancel.py: 536 days, six runs of up to 92 days, more than the four the queue runs at once."""
TEST_LAST = date(2021, 4, 3)
"""The test: 368 days, four runs (each run the daemon creates before the cancel costs the test 5-20 s)."""
LIMIT = 60.0
"""Seconds from the UI's cancel to CANCELED (issue 17)."""
SIMULATOR_ARGS = ("--fail-every", "1", "--fail-kinds", "slow:1")
"""Every exchange request answers after 1 s: a run fetches a day a second, so it is busy when canceled."""

CANCEL = """mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) {
  __typename ... on PythonError { message } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status runs(limit: 200) { runId status creationTime startTime } } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass(frozen=True)
class CancelTrial:
    """What one UI cancel of a running backfill did."""

    seconds: float
    """From sending the cancel mutation to the backfill's status reading CANCELED."""
    runs: list[dict]
    canceled_at: float
    day_counts: dict[date, int]

    @property
    def created_after(self) -> list[dict]:
        return [r for r in self.runs if r["creationTime"] > self.canceled_at]

    @property
    def stopped_mid_run(self) -> list[dict]:
        return [r for r in self.runs if r["status"] == "CANCELED" and r["startTime"]]


def backfill(ui: str, backfill_id: str) -> dict:
    return graphql(ui, STATUS, {"id": backfill_id})["partitionBackfillOrError"]


def day_counts(store: KlineStore, symbol: str) -> dict[date, int]:
    """Stored candles per UTC day of `symbol` (days with none are absent)."""
    with store.engine().connect() as conn:
        return dict(conn.exec_driver_sql(
            "SELECT timestamp::date, count(*) FROM price_klines WHERE symbol = %(s)s GROUP BY 1", {"s": symbol}).all())


def all_created_and_fetching(ui: str, backfill_id: str, runs: int, seconds: float) -> bool:
    """True once the backfill has its `runs` runs and one of them has been executing for `seconds`."""
    found = backfill(ui, backfill_id)["runs"]
    return len(found) == runs and any(
        r["status"] == "STARTED" and r["startTime"] and time.time() - r["startTime"] >= seconds for r in found)


def runs_for(last: date) -> int:
    """How many runs the daemon makes of FIRST..last (one per PARTITIONS_PER_RUN days)."""
    return math.ceil(((last - FIRST).days + 1) / PARTITIONS_PER_RUN)


def cancel_trial(ui: str, store: KlineStore, last: date, *, fetching_seconds: float = 3.0,
                 timeout: float = 150.0) -> CancelTrial:
    """Launch a backfill of FIRST..last from the UI, cancel it as the UI does once the daemon has
    created all its runs and one has fetched for `fetching_seconds`, and wait (polling every
    0.25 s) until it is CANCELED or `timeout` seconds have passed."""
    backfill_id = launch_backfill(ui, ASSETS, f"{FIRST}|{SYMBOL}", f"{last}|{SYMBOL}")
    runs = runs_for(last)
    wait_until(lambda: all_created_and_fetching(ui, backfill_id, runs, fetching_seconds), 240,
               f"{runs} runs created and one fetching")
    canceled_at = time.time()
    assert graphql(ui, CANCEL, {"id": backfill_id})["cancelPartitionBackfill"]["__typename"] == "CancelBackfillSuccess"
    deadline = time.monotonic() + timeout
    while (state := backfill(ui, backfill_id))["status"] != "CANCELED" and time.monotonic() < deadline:
        time.sleep(0.25)
    seconds = time.time() - canceled_at
    assert state["status"] == "CANCELED", f"still {state['status']} {seconds:.0f} s after the cancel"
    return CancelTrial(seconds, state["runs"], canceled_at, day_counts(store, SYMBOL))


@pytest.fixture
def ui(tmp_path, monkeypatch, database_url, dagster_storage) -> Iterator[str]:
    """`dagster dev` on a fresh local instance, the slow simulator behind it; the UI's base URL."""
    with simulator_process(tmp_path / "sim.log", *SIMULATOR_ARGS) as sim_url:
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
        monkeypatch.setenv("BYBIT_BASE_URL", sim_url)
        for name, value in DAGSTER_ENV.items():  # as `kline-pipeline dev` starts it (README for plain `dagster dev`)
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(dagster_home())) as instance:
            instance.add_dynamic_partitions(symbols_partitions.name, [SYMBOL])
        with dagster_dev(tmp_path / "dev.log") as (base, _):
            yield base


def test_a_ui_cancel_ends_canceled_within_a_minute_with_whole_days(ui, kline_store):
    trial = cancel_trial(ui, kline_store, TEST_LAST)
    assert trial.seconds <= LIMIT, f"CANCELED {trial.seconds:.1f} s after the UI's cancel"
    assert len(trial.runs) == runs_for(TEST_LAST) and all(r["status"] in FINISHED for r in trial.runs), trial.runs
    assert trial.created_after == [], trial.runs
    assert trial.stopped_mid_run, f"no run was executing when canceled: {trial.runs}"
    assert set(trial.day_counts.values()) <= {288}, f"a partly written day: {trial.day_counts}"
    time.sleep(3)
    assert day_counts(kline_store, SYMBOL) == trial.day_counts  # nothing fetched or written since
