"""The old HTTP API on top of Dagster: real HTTP against uvicorn on 127.0.0.1, a real instance.

A POST writes a Dagster backfill of exactly the touched days; the daemon (driven in-process, see
test_backfills) executes it and the status call follows it; the gaps call returns what
`kline-pipeline gaps --json` prints; every bad request is refused naming the field and leaves no
backfill, no partition and no row behind; `kline-pipeline dev` runs the API beside the UI.
"""

import json
import shutil
import socket
import subprocess
import sys
from datetime import date

import pytest
import requests

from kline_pipeline.api import create_app
from kline_pipeline.repository_graph import asset_graph
from kline_pipeline.cli import main
from kline_pipeline.ingest import ingest_days
from kline_pipeline.instance.env import DAGSTER_ENV
from kline_pipeline_tests.conftest import NOW
from kline_pipeline_tests.helpers import serve
from kline_pipeline_tests.test_backfills import ASSETS, all_done, count_5m, drive_daemon

TIMEOUT = 15  # seconds, every HTTP call


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(api: str, body: object, **kwargs) -> requests.Response:
    return requests.post(f"{api}/api/backfill", json=body, timeout=TIMEOUT, **kwargs)


def get(api: str, **params: str) -> requests.Response:
    return requests.get(f"{api}/api/backfill", params=params, timeout=TIMEOUT)


def target_pairs(instance, backfill_id: str) -> set[tuple[str, str]]:
    data = instance.get_backfill(backfill_id).get_asset_backfill_data(asset_graph())
    return {(ap.asset_key.to_user_string(), ap.partition_key) for ap in data.target_subset.iterate_asset_partitions()}


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        ("2025-01-01T12:00:00Z", "2025-01-04T00:00:00Z", ["2025-01-01", "2025-01-02", "2025-01-03"]),  # mid-day start
        ("2025-01-30T00:00:00Z", "2025-02-01T00:00:00Z", ["2025-01-30", "2025-01-31"]),  # ends at midnight
        ("2025-01-31T23:00:00Z", "2025-02-01T00:05:00Z", ["2025-01-31", "2025-02-01"]),
    ],
)
def test_post_launches_a_backfill_of_exactly_the_touched_days(api, dagster_env, start, end, days):
    response = post(api, {"symbol": "ETHUSDT", "start": start, "end": end})
    assert response.status_code == 202, response.text
    body = response.json()
    keys = [f"{day}|ETHUSDT" for day in days]
    assert body["partitions"] == keys and sorted(body["assets"]) == ASSETS and body["symbol"] == "ETHUSDT"
    assert body["ui_url"] == f"http://127.0.0.1:3001/runs/b/{body['backfill_id']}"
    [backfill] = dagster_env.get_backfills()
    assert backfill.backfill_id == body["backfill_id"] and backfill.tags["kline/launched_by"] == "api"
    assert target_pairs(dagster_env, backfill.backfill_id) == {(a, k) for a in ASSETS for k in keys}
    assert list(dagster_env.get_dynamic_partitions("symbols")) == ["ETHUSDT"]  # added, as it was new


def test_the_ui_base_comes_from_kline_ui_url(api, monkeypatch):
    monkeypatch.setenv("KLINE_UI_URL", "https://dagster.example.org/")
    body = post(api, {"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}).json()
    assert body["ui_url"] == f"https://dagster.example.org/runs/b/{body['backfill_id']}"


def test_the_old_curl_lines_work_unchanged(api, dagster_env):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    base = api.replace("http://127.0.0.1:", "http://localhost:")
    launched = subprocess.run(
        ["curl", "-sS", "--max-time", "15", "-X", "POST", f"{base}/api/backfill", "-H", "Content-Type: application/json",
         "-d", '{"symbol":"BTCUSDT","start":"2025-01-01T00:00:00Z","end":"2025-02-01T00:00:00Z"}'],
        capture_output=True, text=True, timeout=30, check=True)
    body = json.loads(launched.stdout)
    assert len(body["partitions"]) == 31 and body["partitions"][-1] == "2025-01-31|BTCUSDT"
    gaps = subprocess.run(
        ["curl", "-sS", "--max-time", "15",
         f"{base}/api/backfill?type=gaps&symbol=BTCUSDT&start=2025-01-01T00:00:00Z&end=2025-02-01T00:00:00Z"],
        capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(gaps.stdout)["totals"]["missing"] == 31 * 288  # launched, not yet run


def test_a_posted_backfill_runs_and_its_status_follows(api, daemon, dagster_env, kline_store):
    body = post(api, {"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-03T00:00:00Z"}).json()
    before = get(api, type="status", id=body["backfill_id"]).json()
    assert before["status"] == "REQUESTED" and before["counts"]["requested"] == 14 and not before["done"]
    seconds = drive_daemon(daemon, until=all_done(dagster_env))
    status = get(api, type="status", id=body["backfill_id"])
    assert status.status_code == 200
    doc = status.json()
    assert doc["status"] == "COMPLETED_SUCCESS" and doc["succeeded"], (doc, seconds)
    assert [(p["partition"], p["state"], p["materialised"]) for p in doc["partitions"]] == [
        ("2025-01-01|BTCUSDT", "materialised", 7), ("2025-01-02|BTCUSDT", "materialised", 7)]
    assert count_5m(kline_store, "BTCUSDT") == 2 * 288
    gaps = get(api, type="gaps", symbol="BTCUSDT", start="2025-01-01T00:00:00Z", end="2025-01-03T00:00:00Z").json()
    assert gaps["present"] == gaps["expected"] == 576 and gaps["gaps"] == []


def test_gaps_agree_with_the_cli(api, bybit, kline_store, capsys):
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=[date(2025, 1, 1)], now=NOW)
    with kline_store.engine().begin() as conn:  # lose an hour
        conn.exec_driver_sql("DELETE FROM price_klines WHERE symbol = 'BTCUSDT' "
                             "AND timestamp >= '2025-01-01 05:00+00' AND timestamp < '2025-01-01 06:00+00'")
    span = {"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-03T00:00:00Z"}
    response = get(api, type="gaps", **span)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert main(["gaps", "--symbol", span["symbol"], "--start", span["start"], "--end", span["end"], "--json"]) == 1
    assert response.json() == json.loads(capsys.readouterr().out)
    assert response.json()["totals"]["missing"] == 12 + 288


JSON = {"Content-Type": "application/json"}
GOOD = {"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}
BAD_REQUESTS = [
    # (id, how to send it, expected status, field, words in the error)
    ("lowercase symbol", {"json": {**GOOD, "symbol": "btcusdt"}}, 400, "symbol", "A-Z and 0-9"),
    ("sql in symbol", {"json": {**GOOD, "symbol": "BTC'; DROP TABLE price_klines;--"}}, 400, "symbol", "A-Z"),
    ("unknown symbol", {"json": {**GOOD, "symbol": "NOPEUSDT"}}, 400, "symbol", "not listed"),
    ("number symbol", {"json": {**GOOD, "symbol": 42}}, 400, "symbol", "invalid symbol"),
    ("missing symbol", {"json": {"start": GOOD["start"], "end": GOOD["end"]}}, 400, "symbol", "required"),
    ("missing end", {"json": {"symbol": "BTCUSDT", "start": GOOD["start"]}}, 400, "end", "required"),
    ("non-ISO start", {"json": {**GOOD, "start": "01/01/2025"}}, 400, "start", "ISO 8601"),
    ("naive start", {"json": {**GOOD, "start": "2025-01-01T00:00:00"}}, 400, "start", "no UTC offset"),
    ("naive end", {"json": {**GOOD, "end": "2025-01-02"}}, 400, "end", "no UTC offset"),
    ("start after end", {"json": {**GOOD, "end": "2024-12-31T00:00:00Z"}}, 400, "end", "after start"),
    ("start equals end", {"json": {**GOOD, "end": GOOD["start"]}}, 400, "end", "after start"),
    ("in the future", {"json": {**GOOD, "start": "2025-03-02T00:00:00Z", "end": "2025-03-05T00:00:00Z"}},
     400, "start", "in the future"),
    ("before 2010", {"json": {**GOOD, "start": "2009-01-01T00:00:00Z", "end": "2009-12-31T00:00:00Z"}},
     400, "end", "before 2010"),
    ("span too long", {"json": {**GOOD, "start": "2012-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}},
     400, "end", "at most 3660 days"),
    ("invalid JSON", {"data": b'{"symbol": "BTCUSDT",', "headers": JSON}, 400, "body", "not valid JSON"),
    ("JSON array", {"json": [GOOD]}, 400, "body", "JSON object"),
    ("form body", {"data": GOOD}, 415, "Content-Type", "application/json"),
    ("text body", {"data": json.dumps(GOOD), "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type", "text/plain"),
    ("oversized body", {"json": {**GOOD, "note": "x" * 5000}}, 413, "body", "4096 bytes"),
    ("oversized chunked body", {"data": iter([json.dumps(GOOD).encode()[:-1], b", " + b" " * 5000 + b"}"]),
                                "headers": JSON}, 413, "body", "4096 bytes"),
]
BAD_QUERIES = [
    ("no type", {"symbol": "BTCUSDT"}, 400, "type", "type=gaps"),
    ("unknown type", {"type": "backfill"}, 400, "type", "'backfill' is not known"),
    ("gaps without start", {"type": "gaps", "symbol": "BTCUSDT", "end": GOOD["end"]}, 400, "start", "required"),
    ("gaps bad symbol", {"type": "gaps", "symbol": "btc", "start": GOOD["start"], "end": GOOD["end"]}, 400, "symbol", "A-Z"),
    ("gaps naive end", {"type": "gaps", "symbol": "BTCUSDT", "start": GOOD["start"], "end": "2025-01-02T00:00"},
     400, "end", "no UTC offset"),
    ("gaps reversed", {"type": "gaps", "symbol": "BTCUSDT", "start": GOOD["end"], "end": GOOD["start"]}, 400, "end", "after"),
    ("status without id", {"type": "status"}, 400, "id", "required"),
    ("status bad id", {"type": "status", "id": "../../etc"}, 400, "id", "letters, digits"),
    ("status unknown id", {"type": "status", "id": "nosuchid"}, 404, "id", "no backfill"),
]


def assert_nothing_happened(instance, kline_store) -> None:
    assert instance.get_backfills() == []
    assert list(instance.get_dynamic_partitions("symbols")) == []
    with kline_store.engine().connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM price_klines").scalar() == 0


@pytest.mark.parametrize(("case", "send", "code", "field", "words"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_post_is_refused_naming_the_field(api, dagster_env, kline_store, case, send, code, field, words):
    response = requests.post(f"{api}/api/backfill", timeout=TIMEOUT, **send)
    assert response.status_code == code, response.text
    body = response.json()
    assert body["field"] == field and words in body["error"], body
    assert_nothing_happened(dagster_env, kline_store)


@pytest.mark.parametrize(("case", "params", "code", "field", "words"), BAD_QUERIES, ids=[c[0] for c in BAD_QUERIES])
def test_a_bad_query_is_refused_naming_the_field(api, dagster_env, kline_store, case, params, code, field, words):
    response = get(api, **params)
    assert response.status_code == code, response.text
    body = response.json()
    assert body["field"] == field and words in body["error"], body
    assert_nothing_happened(dagster_env, kline_store)


def test_the_longest_range_is_configurable(dagster_env, bybit, kline_store, monkeypatch):
    monkeypatch.setenv("KLINE_API_MAX_DAYS", "31")  # read once, when the app is built
    with serve(create_app(instance=dagster_env, bybit=bybit, store=kline_store)) as url:
        response = post(url, {**GOOD, "end": "2025-02-02T00:00:00Z"})
    assert response.status_code == 400 and response.json()["field"] == "end" and "at most 31 days" in response.text
    assert_nothing_happened(dagster_env, kline_store)
    monkeypatch.setenv("KLINE_API_MAX_DAYS", "many")
    with pytest.raises(ValueError, match="KLINE_API_MAX_DAYS='many' is not a whole number"):
        create_app(instance=dagster_env, bybit=bybit, store=kline_store)


def test_other_paths_and_methods_answer_json(api):
    assert requests.get(f"{api}/api/nothing", timeout=TIMEOUT).json()["error"].startswith("Not Found")
    response = requests.put(f"{api}/api/backfill", timeout=TIMEOUT)
    assert response.status_code == 405 and "POST, GET and DELETE /api/backfill" in response.json()["error"]


FAKE_DAGSTER = '''#!{python}
"""Stands in for `dagster dev`: records its arguments and what the old API answers, then exits."""
import json, os, sys, time, urllib.error, urllib.request
url = "http://127.0.0.1:{api_port}/api/backfill?type=status&id=nosuchid"
deadline, seen = time.time() + 60, None
while seen is None and time.time() < deadline:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError as exc:
        seen = {{"status": exc.code, "body": json.loads(exc.read())}}
    except OSError:
        time.sleep(0.2)
with open({record!r}, "w") as out:
    json.dump({{"argv": sys.argv[1:], "api": seen,
               "env": {{k: v for k, v in os.environ.items() if k.startswith("DAGSTER_")}}}}, out)
'''


def test_dev_runs_the_api_beside_dagster_and_stops_it(dagster_env, tmp_path, monkeypatch, capsys):
    api_port, record = free_port(), tmp_path / "fake_dagster.json"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dagster"
    fake.write_text(FAKE_DAGSTER.format(python=sys.executable, api_port=api_port, record=str(record)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    ui_port = free_port()  # dev refuses a port in use (3001 may be another dev's)
    assert main(["dev", "--port", str(ui_port), "--api-port", str(api_port)]) == 0
    seen = json.loads(record.read_text())
    assert seen["argv"][:2] == ["dev", "-w"] and seen["argv"][-4:] == ["-h", "127.0.0.1", "-p", str(ui_port)]
    assert seen["api"] == {"status": 404, "body": {"error": "no backfill with id 'nosuchid'", "field": "id"}}
    # Dagster's processes get the project's variables (cancel that stops, batched event writes).
    assert {k: seen["env"].get(k) for k in DAGSTER_ENV} == DAGSTER_ENV
    assert f"old API http://127.0.0.1:{api_port}/api/backfill" in capsys.readouterr().out
    with pytest.raises(OSError):  # the API child was stopped with dagster dev
        socket.create_connection(("127.0.0.1", api_port), timeout=2).close()
