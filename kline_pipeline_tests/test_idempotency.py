"""A repeated POST /api/backfill launches nothing new: Idempotency-Key, or the same request while it
runs (real HTTP against uvicorn, a real Dagster instance; 50 concurrent identical POSTs are in
reliability/test_concurrency.py)."""

import pytest
import requests

from kline_pipeline_tests.test_api import TIMEOUT, post
from kline_pipeline_tests.test_backfills import all_done, drive_daemon

JAN = {"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-03T00:00:00Z"}


def test_the_same_request_while_running_gets_the_same_backfill(api, dagster_env):
    first, again = post(api, JAN), post(api, JAN)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["backfill_id"] == first.json()["backfill_id"] and again.json()["reused"] is True
    assert again.json()["partitions"] == first.json()["partitions"] == ["2025-01-01|BTCUSDT", "2025-01-02|BTCUSDT"]
    # The same days written differently are the same request; other days are not.
    same_days = post(api, {**JAN, "start": "2025-01-01T06:00:00Z", "end": "2025-01-02T12:00:00Z"})
    other_days = post(api, {**JAN, "end": "2025-01-04T00:00:00Z"})
    assert same_days.status_code == 200 and same_days.json()["backfill_id"] == first.json()["backfill_id"]
    assert other_days.status_code == 202 and other_days.json()["backfill_id"] != first.json()["backfill_id"]
    assert len(dagster_env.get_backfills()) == 2


def test_force_launches_a_new_backfill(api, dagster_env):
    first = post(api, JAN).json()["backfill_id"]
    forced = post(api, {**JAN, "force": True})
    assert forced.status_code == 202 and forced.json()["backfill_id"] != first
    assert len(dagster_env.get_backfills()) == 2


def test_a_finished_backfill_is_not_reused(api, dagster_env, daemon):
    first = post(api, JAN).json()["backfill_id"]
    drive_daemon(daemon, until=all_done(dagster_env))
    second = post(api, JAN)
    assert second.status_code == 202 and second.json()["backfill_id"] != first


def test_an_idempotency_key_answers_every_retry_with_the_first_backfill(api, dagster_env, daemon):
    key = {"Idempotency-Key": "nightly-2025-01-01"}
    first = post(api, JAN, headers=key)
    drive_daemon(daemon, until=all_done(dagster_env))  # even after it finished
    retried = post(api, JAN, headers=key)
    forced = post(api, {**JAN, "force": True}, headers=key)  # the key wins: a retry of a forced request
    assert first.status_code == 202 and (retried.status_code, forced.status_code) == (200, 200)
    assert retried.json()["backfill_id"] == forced.json()["backfill_id"] == first.json()["backfill_id"]
    assert dagster_env.get_backfill(first.json()["backfill_id"]).tags["kline/idempotency_key"] == "nightly-2025-01-01"
    assert len(dagster_env.get_backfills()) == 1


def test_a_key_reused_for_another_request_is_refused(api, dagster_env):
    key = {"Idempotency-Key": "job-42"}
    first = post(api, JAN, headers=key).json()["backfill_id"]
    response = post(api, {**JAN, "symbol": "ETHUSDT"}, headers=key)
    assert response.status_code == 422 and response.json()["field"] == "Idempotency-Key"
    assert f"'BTCUSDT 2025-01-01..2025-01-02' (backfill {first})" in response.json()["error"]
    assert len(dagster_env.get_backfills()) == 1 and "ETHUSDT" not in dagster_env.get_dynamic_partitions("symbols")


@pytest.mark.parametrize(
    ("send", "field", "words"),
    [
        ({"headers": {"Idempotency-Key": "has spaces"}}, "Idempotency-Key", "visible ASCII"),
        ({"headers": {"Idempotency-Key": "k" * 256}}, "Idempotency-Key", "1-255"),
        ({"json": {**JAN, "force": "yes"}}, "force", "true or false"),
    ],
    ids=["key with spaces", "key too long", "force not a boolean"],
)
def test_a_bad_key_or_force_is_refused(api, dagster_env, send, field, words):
    response = requests.post(f"{api}/api/backfill", timeout=TIMEOUT, **{"json": JAN, **send})
    assert response.status_code == 400 and response.json()["field"] == field and words in response.json()["error"]
    assert dagster_env.get_backfills() == []
