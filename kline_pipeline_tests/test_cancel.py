"""Cancelling a backfill through the old API (DELETE) and the CLI (`backfill --cancel`), with the
daemon driven in-process (see test_backfills): queued runs are canceled at once, the daemon then
marks the backfill CANCELED, and a second cancel says there is nothing left to do. The cancel
sensor does the same for a backfill the UI marked CANCELING. Under `dagster dev`, with runs busy
fetching, see test_cancel_ui.py and reliability/test_cancel.py."""

import json
import logging
import time

import dagster as dg
import pytest
import requests
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.utils import make_new_run_id
from dagster._daemon.backfill import execute_backfill_iteration

from kline_pipeline.cancel_sensor import LATE_RUN_WATCH_SECONDS, cancel_sensor, cancel_tick
from kline_pipeline.cli import main
from kline_pipeline_tests.test_api import get, post
from kline_pipeline_tests.test_backfills import all_done, drive_daemon

JAN = {"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-03T00:00:00Z"}


def queue_runs(daemon, instance) -> list:
    """One backfill-daemon iteration: the backfill's runs are created and QUEUED, none launched."""
    list(execute_backfill_iteration(daemon, logging.getLogger("test_cancel")))
    return instance.get_runs()


def delete(api: str, **params: str) -> requests.Response:
    return requests.delete(f"{api}/api/backfill", params=params, timeout=15)


def test_delete_cancels_queued_runs_and_the_daemon_ends_it_canceled(api, dagster_env, daemon):
    backfill_id = post(api, JAN).json()["backfill_id"]
    [run] = queue_runs(daemon, dagster_env)
    assert run.status == DagsterRunStatus.QUEUED
    response = delete(api, id=backfill_id)
    assert response.status_code == 202
    assert response.json() == {"backfill_id": backfill_id, "status": "CANCELING", "queued_runs_canceled": 1,
                               "runs_terminated": 0, "already_finished": False}
    assert dagster_env.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED  # at once, not a loop later
    drive_daemon(daemon, until=all_done(dagster_env))
    assert get(api, type="status", id=backfill_id).json()["status"] == "CANCELED"
    again = delete(api, id=backfill_id)
    assert again.status_code == 200 and again.json()["already_finished"] is True
    assert [r.status for r in dagster_env.get_runs()] == [DagsterRunStatus.CANCELED]  # nothing launched after


def test_delete_refuses_a_bad_or_unknown_id(api, dagster_env):
    missing, bad, unknown = delete(api), delete(api, id="../etc"), delete(api, id="nosuchid")
    assert (missing.status_code, bad.status_code, unknown.status_code) == (400, 400, 404)
    assert "id is required" in missing.json()["error"] and "'../etc' is not a backfill id" in bad.json()["error"]
    assert unknown.json() == {"error": "no backfill with id 'nosuchid'", "field": "id"}


def test_the_cli_cancels_and_waits_for_canceled(dagster_env, daemon, capsys):
    assert main(["backfill", "--symbol", JAN["symbol"], "--start", JAN["start"], "--end", JAN["end"]]) == 0
    backfill_id = dagster_env.get_backfills()[0].backfill_id
    queue_runs(daemon, dagster_env)
    capsys.readouterr()
    assert main(["backfill", "--cancel", backfill_id]) == 0
    out = capsys.readouterr().out
    assert f"backfill {backfill_id}: CANCELING; 1 queued run(s) canceled, 0 running run(s) told to stop" in out
    drive_daemon(daemon, until=all_done(dagster_env))
    assert main(["backfill", "--cancel", backfill_id, "--wait"]) == 0
    assert f"backfill {backfill_id} had already ended (CANCELED); nothing to cancel" in capsys.readouterr().out


def test_the_cli_refuses_bad_cancel_and_follow_arguments(dagster_env, capsys):
    cases = [
        (["backfill", "--cancel", "nosuchid"], "--cancel: no backfill with id 'nosuchid'"),
        (["backfill", "--follow", "a b"], "--follow: id 'a b' is not a backfill id"),
        (["backfill", "--cancel", "abc", "--symbol", "BTCUSDT"], "--cancel takes a backfill id only, not --symbol"),
        (["backfill", "--symbol", "BTCUSDT", "--start", "2025-01-01T00:00:00Z"], "--end is required to launch"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        assert words in capsys.readouterr().err
    assert dagster_env.get_backfills() == []


def test_the_cancel_sensor_ends_a_backfill_the_ui_canceled_and_stops_a_late_run(api, dagster_env, daemon):
    context = dg.build_sensor_context(instance=dagster_env)
    assert cancel_sensor(context).skip_message == "no backfill is being canceled"
    backfill_id = post(api, JAN).json()["backfill_id"]
    [run] = queue_runs(daemon, dagster_env)
    assert cancel_sensor(context).skip_message == "no backfill is being canceled"  # a running backfill is left alone
    assert dagster_env.get_run_by_id(run.run_id).status == DagsterRunStatus.QUEUED

    # A second run the daemon's worker thread is still creating (its planned events being written).
    being_created = dagster_env.add_run(run.with_status(DagsterRunStatus.NOT_STARTED)._replace(run_id=make_new_run_id()))
    backfill = dagster_env.get_backfill(backfill_id)
    dagster_env.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))  # what the UI's Cancel does
    assert cancel_sensor(context).skip_message == f"{backfill_id}: CANCELED (2 run(s) canceled before starting now)"
    assert dagster_env.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
    dagster_env.submit_run(being_created.run_id, workspace=None)  # what the thread does once it has created it
    assert dagster_env.get_run_by_id(being_created.run_id).status == DagsterRunStatus.CANCELED  # never queued
    ended = dagster_env.get_backfill(backfill_id)
    assert ended.status == BulkActionStatus.CANCELED and ended.backfill_end_timestamp is not None
    assert json.loads(context.cursor) == {backfill_id: pytest.approx(time.time(), abs=30)}

    # A run the daemon's worker thread was still creating when the backfill ended is stopped too.
    late = dagster_env.add_run(run.with_status(DagsterRunStatus.QUEUED)._replace(run_id=make_new_run_id()))
    assert cancel_sensor(context).skip_message == (
        f"{backfill_id} (CANCELED): 1 late run(s) canceled before starting, 0 stopped")
    assert dagster_env.get_run_by_id(late.run_id).status == DagsterRunStatus.CANCELED
    assert cancel_sensor(context).skip_message == "no backfill is being canceled"
    list(execute_backfill_iteration(daemon, logging.getLogger("test_cancel")))  # the daemon leaves it as it is
    assert dagster_env.get_backfill(backfill_id).status == BulkActionStatus.CANCELED


def test_the_cancel_sensor_forgets_a_backfill_after_the_watch(dagster_env):
    old = json.dumps({"abcdefgh": time.time() - LATE_RUN_WATCH_SECONDS - 1})
    assert cancel_tick(dagster_env, old, time.time()) == ("no backfill is being canceled", "{}")

