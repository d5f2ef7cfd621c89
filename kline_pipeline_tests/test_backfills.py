"""Backfills launched outside the UI: the Dagster record, execution by the daemon,
progress, and the `kline-pipeline backfill` command (also its `--wait` exit codes).

The daemon is driven in-process, one iteration at a time (`drive_daemon`): the same backfill and
run-queue logic `dagster-daemon run` loops every 30 s, against a real code server subprocess
loaded from workspace.yaml; runs execute in their own subprocesses with this test's environment
(KLINE_DATABASE_URL = the session database, BYBIT_BASE_URL = the in-process simulator).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from kline_pipeline.backfills import backfill_status, launch_backfill, progress_lines
from kline_pipeline.cli import build_parser, main
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline_tests.conftest import NOW

UTC = timezone.utc
ASSETS = sorted(["price_klines_5m", *(rollup.table for rollup in ROLLUPS)])


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def drive_daemon(context, *, until, timeout: float = 60.0) -> float:
    """Run backfill + run-queue daemon iterations until `until()` is true; return seconds taken."""
    import logging

    logger = logging.getLogger("test_backfills.daemon")
    queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
    started = time.monotonic()
    while not until():
        assert time.monotonic() - started < timeout, "the backfill did not finish in time"
        list(execute_backfill_iteration(context, logger))
        list(queue.run_iteration(context))
        time.sleep(0.3)
    return time.monotonic() - started


def all_done(instance: dg.DagsterInstance):
    return lambda: bool(instance.get_backfills()) and all(
        b.status.value.startswith(("COMPLETED", "CANCELED", "FAILED")) for b in instance.get_backfills())


def count_5m(kline_store, symbol: str) -> int:
    with kline_store.engine().connect() as conn:
        return conn.exec_driver_sql(
            "SELECT count(*) FROM price_klines WHERE symbol = %(s)s AND timeframe = '5m'", {"s": symbol}).scalar()


def test_launch_writes_a_ui_style_asset_backfill(dagster_env, bybit):
    launched = launch_backfill(dagster_env, symbol="ETHUSDT", start=utc("2025-01-30T06:00:00Z"),
                               end=utc("2025-02-01T00:00:00Z"), now=NOW, bybit=bybit)
    assert launched.partition_keys == ("2025-01-30|ETHUSDT", "2025-01-31|ETHUSDT") and launched.added_symbol
    assert list(dagster_env.get_dynamic_partitions(symbols_partitions.name)) == ["ETHUSDT"]
    [backfill] = dagster_env.get_backfills()
    assert backfill.backfill_id == launched.backfill_id and backfill.status == BulkActionStatus.REQUESTED
    assert backfill.is_asset_backfill and sorted(k.to_user_string() for k in backfill.asset_selection) == ASSETS
    assert launched.ui_url == f"http://127.0.0.1:3001/runs/b/{launched.backfill_id}"
    status = backfill_status(dagster_env, launched.backfill_id)
    assert status["counts"] == {"materialised": 0, "failed": 0, "in_progress": 0, "requested": 14, "total": 14}
    assert [row["partition"] for row in status["partitions"]] == list(launched.partition_keys)
    assert progress_lines(status)[0] == "2025-01-30|ETHUSDT  [..........] materialised 0/7 assets"
    with pytest.raises(KeyError):
        backfill_status(dagster_env, "nosuchid")


def test_the_daemon_executes_the_backfill_and_status_follows(daemon, dagster_env, bybit, kline_store):
    launched = launch_backfill(dagster_env, symbol="BTCUSDT", start=utc("2025-01-01T00:00:00Z"),
                               end=utc("2025-01-03T00:00:00Z"), now=NOW, bybit=bybit)
    seconds = drive_daemon(daemon, until=all_done(dagster_env))
    status = backfill_status(dagster_env, launched.backfill_id)
    assert status["status"] == "COMPLETED_SUCCESS" and status["done"] and status["succeeded"], (status, seconds)
    assert status["counts"]["materialised"] == status["counts"]["total"] == 14
    assert status["runs"] == {"success": 1}  # one multi-run chunk covers both days and all seven assets
    assert all(row["state"] == "materialised" for row in status["partitions"])
    assert count_5m(kline_store, "BTCUSDT") == 2 * 288


@pytest.fixture
def backfill_args():
    return ["backfill", "--symbol", "BTCUSDT", "--start", "2025-01-05T00:00:00Z", "--end", "2025-01-07T00:00:00Z"]


def run_cli_while_daemon_runs(daemon, instance, argv, *, before_daemon=None) -> int:
    """`kline-pipeline <argv>` in a thread (it polls) while this thread plays the daemon."""
    result: dict[str, int] = {}
    cli = threading.Thread(target=lambda: result.setdefault("code", main(argv)), daemon=True)
    cli.start()
    deadline = time.monotonic() + 30
    while not instance.get_backfills():
        assert time.monotonic() < deadline and cli.is_alive(), "the command launched no backfill"
        time.sleep(0.05)
    if before_daemon:
        before_daemon(instance.get_backfills()[0])
    drive_daemon(daemon, until=lambda: not cli.is_alive())
    cli.join(timeout=10)
    return result["code"]


def test_backfill_wait_shows_progress_and_exits_0(daemon, dagster_env, backfill_args, capsys, kline_store):
    assert run_cli_while_daemon_runs(daemon, dagster_env, [*backfill_args, "--wait", "--poll-seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "launched backfill" in out and "2 partitions (2025-01-05|BTCUSDT .. 2025-01-06|BTCUSDT) x 7 assets" in out
    # Not a TTY: one line per change, ending with every partition complete.
    assert "2025-01-05|BTCUSDT  [..........] materialised 0/7 assets" in out
    assert "2025-01-06|BTCUSDT  [##########] materialised 7/7 assets" in out
    assert "COMPLETED_SUCCESS — 14/14 asset partitions materialised" in out
    assert count_5m(kline_store, "BTCUSDT") == 2 * 288


def test_backfill_wait_exits_1_when_runs_fail(daemon, dagster_env, backfill_args, simulator, capsys):
    # The run's first Bybit request gets HTTP 403 (an IP ban): the asset fails at once, no retries.
    failing = run_cli_while_daemon_runs(daemon, dagster_env, [*backfill_args, "--wait", "--poll-seconds", "0.2"],
                                        before_daemon=lambda _: simulator.inject("403"))
    assert failing == 1
    out = capsys.readouterr().out
    assert "COMPLETED_FAILED" in out and "2025-01-05|BTCUSDT  [..........] materialised 0/7 assets, 7 failed" in out


def test_backfill_wait_exits_1_when_canceled(daemon, dagster_env, backfill_args, capsys):
    def cancel(backfill):  # what the UI's "Cancel backfill" does
        dagster_env.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))

    assert run_cli_while_daemon_runs(daemon, dagster_env, [*backfill_args, "--wait", "--poll-seconds", "0.2"],
                                     before_daemon=cancel) == 1
    assert "CANCELED" in capsys.readouterr().out


def test_backfill_without_wait_returns_at_once(dagster_env, backfill_args, capsys):
    assert main(backfill_args) == 0
    out = capsys.readouterr().out
    assert "the Dagster daemon runs it" in out and "UI: http://127.0.0.1:3001/runs/b/" in out
    assert len(dagster_env.get_backfills()) == 1


def test_ctrl_c_while_following_says_the_backfill_goes_on(dagster_env, backfill_args):
    # No daemon: the backfill stays REQUESTED and the command keeps following until interrupted.
    cli = subprocess.Popen([sys.executable, "-m", "kline_pipeline.cli", *backfill_args, "--wait"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    first = cli.stdout.readline()
    assert first.startswith("launched backfill "), first + cli.stderr.read()
    backfill_id = first.split()[2].rstrip(":")
    assert "[..........] materialised 0/7 assets" in cli.stdout.readline() + cli.stdout.readline()
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 130 and "Traceback" not in err
    assert (f"interrupted: only this command stopped; backfill {backfill_id} continues in the Dagster daemon.\n"
            f"  follow it:  kline-pipeline backfill --follow {backfill_id}\n"
            f"  in the UI:  http://127.0.0.1:3001/runs/b/{backfill_id}\n"
            f"  cancel it:  kline-pipeline backfill --cancel {backfill_id}") in err
    assert dagster_env.get_backfill(backfill_id).status == BulkActionStatus.REQUESTED  # untouched


def test_follow_shows_an_existing_backfill_until_it_ends(daemon, dagster_env, backfill_args, capsys):
    assert main(backfill_args) == 0
    backfill_id = dagster_env.get_backfills()[0].backfill_id
    assert run_cli_while_daemon_runs(daemon, dagster_env, ["backfill", "--follow", backfill_id, "--poll-seconds", "0.2"]) == 0
    assert "COMPLETED_SUCCESS — 14/14 asset partitions materialised" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--symbol", "NOPEUSDT", "--symbol: symbol 'NOPEUSDT' is not listed"),
     ("--start", "2025-01-05", "--start: '2025-01-05' has no UTC offset"),
     ("--end", "2025-01-01T00:00:00Z", "--end: end 2025-01-01T00:00:00+00:00 must be after start")],
)
def test_backfill_refuses_bad_arguments_and_launches_nothing(dagster_env, backfill_args, capsys, option, value, message):
    argv = list(backfill_args)
    argv[argv.index(option) + 1] = value
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing was launched" in err
    assert dagster_env.get_backfills() == [] and list(dagster_env.get_dynamic_partitions("symbols")) == []


@pytest.mark.parametrize("command", [["backfill"], ["serve-api"], ["dev"]])
def test_new_commands_explain_themselves(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "usage: kline-pipeline" in text and "daemon" in text
    if command == ["dev"]:
        assert "default 3001" in text and "default 3000" in text and "--no-api" in text
    if command == ["serve-api"]:
        assert "default 127.0.0.1" in text and "POST /api/backfill" in text



def test_backfill_missing_launches_only_the_days_with_holes(dagster_env, bybit, kline_store, capsys):
    """`backfill --missing` reads the gap report: of Jan 1-5, Jan 1, 2 and 4 are stored whole and
    Jan 3 has an hour deleted, Jan 5 was never fetched; only Jan 3 and Jan 5 are launched. Once
    nothing is missing, it launches nothing and says so."""
    from datetime import date

    from kline_pipeline.ingest import ingest_days

    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", now=NOW,
                days=[date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3), date(2025, 1, 4)])
    with kline_store.engine().begin() as conn:
        conn.exec_driver_sql("DELETE FROM price_klines WHERE symbol = 'BTCUSDT' AND timestamp >= '2025-01-03 10:00Z' "
                             "AND timestamp < '2025-01-03 11:00Z'")
    argv = ["backfill", "--symbol", "BTCUSDT", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-06T00:00:00Z",
            "--missing"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    [backfill] = dagster_env.get_backfills()
    assert sorted((k.asset_key.to_user_string(), k.partition_key)
                  for k in backfill.asset_backfill_data.target_subset.iterate_asset_partitions()) == sorted(
        (asset, f"2025-01-0{day}|BTCUSDT") for asset in ASSETS for day in (3, 5))
    assert out.startswith(f"launched backfill {backfill.backfill_id}: 2 partitions (2025-01-03|BTCUSDT .. "
                          "2025-01-05|BTCUSDT) x 7 assets")
    assert backfill.title == "BTCUSDT 2025-01-03 to 2025-01-05 (2 days with missing candles)"

    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", now=NOW, days=[date(2025, 1, 3), date(2025, 1, 5)])
    assert main(argv) == 0
    assert capsys.readouterr().out == ("BTCUSDT: no missing candle in [2025-01-01 00:00, 2025-01-06 00:00) UTC "
                                       "(`kline-pipeline gaps` shows the report); nothing was launched\n")
    assert len(dagster_env.get_backfills()) == 1


def test_missing_takes_a_range_not_a_backfill_id(dagster_env, capsys):
    assert main(["backfill", "--follow", "abcdefgh", "--missing"]) == 2
    assert "--follow takes a backfill id only, not --missing; nothing was changed" in capsys.readouterr().err
