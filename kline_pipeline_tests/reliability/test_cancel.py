"""Cancelling large backfills under `kline-pipeline dev`: from the UI, and with the CLI.

Two multi-year backfills of 92-day runs (every exchange request answering after 1 s, so runs are
busy when the cancel comes) are cancelled at once: one with the UI's GraphQL mutation, one with
`kline-pipeline backfill --cancel ID --wait`. Each must stop queueing runs at once (at most the
run the daemon was creating at that moment), end its running run at a day boundary (whole days
only, the run CANCELED), reach CANCELED, and fetch and write nothing afterwards.
"""

import os
import re
import subprocess
import sys
import time
from datetime import date, datetime, timezone

import dagster as dg
import requests

from kline_pipeline.instance.setup import dagster_home
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline_tests.processes import graphql, kline_dev, launch_backfill, simulator_process, wait_until

ASSETS = ["price_klines_5m", *(rollup.table for rollup in ROLLUPS)]
CANCEL = """mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) {
  __typename ... on PythonError { message } } }"""
# The shared BACKFILL_STATUS query with the times this test compares with the cancel.
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status runs(limit: 200) { runId status creationTime startTime } } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
# Seconds from the cancel to CANCELED. What bounds it (kline_pipeline/cancel.py): the run the
# daemon is creating when the cancel comes (writing 644 "planned" events took 30-55 s here with
# two backfills at once on SQLite), then its 30 s loop once (CLI: runs already stopped) or twice (UI).
UI_LIMIT, CLI_LIMIT = 150, 120


def backfill(ui: str, backfill_id: str) -> dict:
    return graphql(ui, STATUS, {"id": backfill_id})["partitionBackfillOrError"]


def day_counts(store, symbol: str) -> dict[date, int]:
    with store.engine().connect() as conn:
        return dict(conn.exec_driver_sql(
            "SELECT timestamp::date, count(*) FROM price_klines WHERE symbol = %(s)s GROUP BY 1", {"s": symbol}).all())


def running_for(ui: str, backfill_id: str, seconds: float) -> bool:
    """True once one of the backfill's runs has been executing for `seconds`."""
    return any(r["status"] == "STARTED" and r["startTime"] and time.time() - r["startTime"] >= seconds
               for r in backfill(ui, backfill_id)["runs"])


def test_a_canceled_backfill_stops_at_once_with_whole_days(tmp_path, monkeypatch, kline_store, database_url, dagster_storage,
                                                           ledger):
    with simulator_process(tmp_path / "sim.log", "--fail-every", "1", "--fail-kinds", "slow:1") as sim_url:
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
        monkeypatch.setenv("BYBIT_BASE_URL", sim_url)
        with dg.DagsterInstance.from_config(str(dagster_home())) as instance:
            instance.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT"])
        today = datetime.now(timezone.utc).date().isoformat()
        with kline_dev(tmp_path / "dev.log") as (ui, api, _):
            # From the UI: every asset, BTCUSDT from its listing month to today (28 runs of 92 days).
            ui_id = launch_backfill(ui, ASSETS, "2020-04-01|BTCUSDT", f"{today}|BTCUSDT")
            # From the old API: ETHUSDT, four years.
            posted = requests.post(f"{api}/api/backfill", json={
                "symbol": "ETHUSDT", "start": "2021-04-01T00:00:00Z", "end": "2025-04-01T00:00:00Z"}, timeout=60)
            assert posted.status_code == 202, posted.text
            cli_id = posted.json()["backfill_id"]

            wait_until(lambda: running_for(ui, ui_id, 5) and running_for(ui, cli_id, 5), 240, "both backfills running")
            canceled_at = time.time()
            assert graphql(ui, CANCEL, {"id": ui_id})["cancelPartitionBackfill"]["__typename"] == "CancelBackfillSuccess"
            cli = subprocess.Popen([sys.executable, "-m", "kline_pipeline.cli", "backfill", "--cancel", cli_id, "--wait"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
            ui_done = wait_until(lambda: backfill(ui, ui_id)["status"] == "CANCELED" and time.time(), UI_LIMIT + 30,
                                 "the UI-canceled backfill to be CANCELED")
            out, err = cli.communicate(timeout=CLI_LIMIT + 60)
            assert cli.returncode == 0, err
            cli_seconds = int(re.search(r"CANCELED after (\d+) s", out).group(1))
            assert ui_done - canceled_at <= UI_LIMIT and cli_seconds <= CLI_LIMIT, (ui_done - canceled_at, out)

            outcome = {}
            for symbol, backfill_id in (("BTCUSDT", ui_id), ("ETHUSDT", cli_id)):
                runs = wait_until(lambda backfill_id=backfill_id: [r for r in backfill(ui, backfill_id)["runs"]]
                                  if all(r["status"] in FINISHED for r in backfill(ui, backfill_id)["runs"]) else None,
                                  30, f"every run of {symbol}'s backfill to finish")
                late = [r for r in runs if r["creationTime"] > canceled_at]
                started_late = [r for r in runs if (r["startTime"] or 0) > canceled_at + 2]
                assert len(late) <= 1 and not [r for r in started_late if r["status"] == "SUCCESS"], runs
                stopped = [r for r in runs if r["status"] == "CANCELED" and r["startTime"]]
                assert stopped, f"no running run of {symbol} was stopped: {runs}"
                counts = day_counts(kline_store, symbol)
                assert set(counts.values()) <= {288}, f"{symbol}: a partly written day: {counts}"
                outcome[symbol] = (len(runs), len(late), len(stopped), len(counts))
            before = {s: day_counts(kline_store, s) for s in outcome}
            time.sleep(10)
            assert {s: day_counts(kline_store, s) for s in outcome} == before  # nothing fetched or written since
    (ui_runs, ui_late, ui_stopped, ui_days), (cli_runs, cli_late, cli_stopped, cli_days) = outcome.values()
    ledger.record("cancel", "cancel two multi-year UI/API backfills while their 92-day runs fetch (1 s per "
                  "request): one with the UI's Cancel, one with `kline-pipeline backfill --cancel ID --wait`",
                  f"UI: CANCELED {ui_done - canceled_at:.0f} s after the cancel, {ui_runs} run(s), {ui_late} created "
                  f"after it, {ui_stopped} stopped mid-run; CLI: CANCELED after {cli_seconds} s, {cli_runs} run(s), "
                  f"{cli_late} created after it, {cli_stopped} stopped; only whole days ({ui_days} + {cli_days}), "
                  "nothing written afterwards")
