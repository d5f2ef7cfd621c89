"""Bad input, everywhere it enters: each is refused with an error naming the value; nothing is written.

Entry points: Dagster partition keys (the UI's "add partition" accepts any text), the CLI, the
HTTP API, the manual `refresh_price_klines` SQL, and the exchange category setting.
"""

from datetime import timedelta, timezone

import dagster as dg
import psycopg2
import pytest
import requests

from kline_pipeline.api import create_app
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient
from kline_pipeline.cli import main
from kline_pipeline.ingest import ingest_days
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline_tests.conftest import NOW
from kline_pipeline_tests.helpers import serve

UTC = timezone.utc
INJECTION = "BTC'; DROP TABLE price_klines;--"
LOOKALIKE = "ВТСUSDT"  # Cyrillic В, Т, С


def fingerprint(store) -> dict[str, tuple[int, str]]:
    """Row count and content hash of every table: equal before and after means nothing changed."""
    with store.engine().connect() as conn:
        tables = [r[0] for r in conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: tuple(conn.exec_driver_sql(
            f'SELECT count(*), coalesce(md5(string_agg(x::text, \'|\' ORDER BY x::text)), \'\') FROM "{t}" AS x').one())
            for t in tables}


@pytest.fixture
def seeded(kline_store, bybit, simulator):
    """One stored day, so 'intact' means something."""
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=[NOW.date() - timedelta(days=3)], now=NOW)
    simulator.reset_requests()
    return kline_store


@pytest.mark.parametrize("symbol", ["btcusdt", INJECTION, LOOKALIKE, "B"])
def test_partition_keys(seeded, bybit, simulator, frozen_clock, ledger, symbol):
    before = fingerprint(seeded)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(symbols_partitions.name, [symbol])  # the UI accepts any text
        result = dg.materialize([price_klines_5m], instance=instance, partition_key=f"2025-01-01|{symbol}",
                                resources={"bybit": bybit, "kline_store": seeded}, raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert f"invalid symbol {symbol!r}" in error and "A-Z and 0-9" in error
    assert simulator.requests == [] and fingerprint(seeded) == before
    ledger.record("bad input", f"partition key symbol `{symbol}`", "run failed naming it, no request, tables intact")


CLI_CASES = [
    (["symbols", "add", "btcusdt"], "invalid symbol 'btcusdt'"),
    (["symbols", "add", INJECTION], "DROP TABLE"),
    (["symbols", "add", "NOPEUSDT"], "'NOPEUSDT' is not listed"),
    (["symbols", "add", ""], "invalid symbol ''"),
    (["gaps", "--symbol", "BTCUSDT", "--start", "2025-02-01T00:00:00Z", "--end", "2025-01-01T00:00:00Z"], "must be after start"),
    (["gaps", "--symbol", "BTCUSDT", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-01T00:00:00Z"], "must be after start"),
    (["gaps", "--symbol", "BTCUSDT", "--start", "0001-01-01T00:00:00+01:00", "--end", "2025-01-02T00:00:00Z"],
     "--start: '0001-01-01T00:00:00+01:00' is outside the years 1-9999 in UTC"),
    (["gaps", "--symbol", "BTCUSDT", "--start", "2025-01-01T00:00:00Z", "--end", "9999-12-31T23:30:00-01:00"],
     "--end: '9999-12-31T23:30:00-01:00' is outside the years 1-9999 in UTC"),
    (["gaps", "--symbol", "BTCUSDT", "--start", "0001-01-01T00:00:00Z", "--end", "0001-01-02T00:00:00Z"], "before 2010"),
    (["gaps", "--symbol", "FOO|BAR", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-02T00:00:00Z"],
     "invalid symbol 'FOO|BAR'"),
    (["backfill", "--symbol", "FOO|BAR", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-02T00:00:00Z"],
     "invalid symbol 'FOO|BAR'"),
    (["backfill", "--cancel", "nosuchid"], "no backfill with id 'nosuchid'"),
    (["backfill", "--follow", "../x"], "is not a backfill id"),
    (["symbols", "remove", "NOPEUSDT"], "no symbol partition 'NOPEUSDT'"),
    (["simulate-exchange", "--fail-kinds", "502,bogus"], "unknown fault kind 'bogus'"),
    (["gaps", "--symbol", "BTCUSDT", "--start", "2025-01-01T00:00:00", "--end", "2025-01-02T00:00:00Z"], "no UTC offset"),
    (["gaps", "--symbol", "BTCUSDT", "--start", "01/01/2025", "--end", "2025-01-02T00:00:00Z"], "'01/01/2025' is not an ISO"),
    (["backfill", "--symbol", "BTCUSDT", "--start", "2030-01-01T00:00:00Z", "--end", "2030-02-01T00:00:00Z"], "in the future"),
    (["backfill", "--symbol", "BTCUSDT", "--start", "2001-01-01T00:00:00Z", "--end", "2002-01-01T00:00:00Z"], "before 2010"),
    (["backfill", "--symbol", "BTCUSDT", "--start", "2011-01-01T00:00:00Z", "--end", "2025-01-01T00:00:00Z"], "at most"),
]


@pytest.mark.parametrize(("argv", "named"), CLI_CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(CLI_CASES)])
def test_cli(seeded, simulator, tmp_path, monkeypatch, database_url, dagster_storage, capsys, frozen_clock, ledger, argv,
             named):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
    monkeypatch.setenv("BYBIT_BASE_URL", simulator.url)
    before = fingerprint(seeded)
    assert main(argv) == 2
    assert named in capsys.readouterr().err
    assert fingerprint(seeded) == before
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.get_dynamic_partitions(symbols_partitions.name) == [] and instance.get_backfills() == []
    ledger.record("bad input", f"CLI `kline-pipeline {' '.join(argv)}`", f"exit 2, error names it ({named}); nothing written")


USAGE_CASES = [
    (["backfill", "--follow", "abc", "--poll-seconds", "nan"], "'nan' is not a number of seconds above 0"),
    (["serve-api", "--port", "70000"], "70000 is not a port number: use 1-65535"),
    (["dev", "--api-port", "0"], "0 is not a port number"),
    (["simulate-exchange", "--fail-every", "0"], "'0' is not a whole number of at least 1"),
]


@pytest.mark.parametrize(("argv", "named"), USAGE_CASES, ids=[" ".join(a[:2]) for a, _ in USAGE_CASES])
def test_cli_usage(capsys, ledger, argv, named):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and named in capsys.readouterr().err
    ledger.record("bad input", f"CLI `kline-pipeline {' '.join(argv)}`", f"usage error, exit 2 ({named}); nothing started")


API_CASES = [
    ({"symbol": LOOKALIKE, "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}, "symbol"),
    ({"symbol": "BTCUSDT", "start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "end"),
    ({"symbol": "BTCUSDT", "start": "next monday", "end": "2025-01-01T00:00:00Z"}, "start"),
    ({"symbol": "", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}, "symbol"),
]


@pytest.mark.parametrize(("body", "field"), API_CASES)
def test_http_api(seeded, bybit, frozen_clock, ledger, body, field):
    before = fingerprint(seeded)
    with dg.instance_for_test() as instance:
        with serve(create_app(instance=instance, bybit=bybit, store=seeded)) as url:
            response = requests.post(f"{url}/api/backfill", json=body, timeout=15)
        assert response.status_code == 400 and response.json()["field"] == field
        assert instance.get_backfills() == [] and instance.get_dynamic_partitions(symbols_partitions.name) == []
    assert fingerprint(seeded) == before
    ledger.record("bad input", f"POST /api/backfill {body}", f"400 naming `{field}`: {response.json()['error'][:80]}")


RAW_API_CASES = [
    ("JSON nested 2,000 deep (under 4 KiB)", {"data": b"[" * 2000 + b"]" * 2000}, "body", "nested too deeply"),
    ("start 0001-01-01T00:00:00+01:00", {"json": {"symbol": "BTCUSDT", "start": "0001-01-01T00:00:00+01:00",
                                                   "end": "2025-01-02T00:00:00Z"}}, "start", "outside the years 1-9999"),
    ("end 9999-12-31T23:30:00-01:00", {"json": {"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z",
                                                 "end": "9999-12-31T23:30:00-01:00"}}, "end", "outside the years 1-9999"),
    ("symbol a lone surrogate", {"data": b'{"symbol": "\\ud800", "start": "2025-01-01T00:00:00Z", '
                                          b'"end": "2025-01-02T00:00:00Z"}'}, "symbol", "invalid symbol"),
    ("symbol FOO|BAR", {"json": {"symbol": "FOO|BAR", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}},
     "symbol", "invalid symbol 'FOO|BAR'"),
]


@pytest.mark.parametrize(("case", "send", "field", "named"), RAW_API_CASES, ids=[c[0] for c in RAW_API_CASES])
def test_http_api_edge_cases(seeded, bybit, frozen_clock, ledger, case, send, field, named):
    before = fingerprint(seeded)
    with dg.instance_for_test() as instance:
        with serve(create_app(instance=instance, bybit=bybit, store=seeded)) as url:
            response = requests.post(f"{url}/api/backfill", timeout=15, headers={"Content-Type": "application/json"},
                                     **send)
        assert response.status_code == 400, response.text
        assert response.json()["field"] == field and named in response.json()["error"]
        assert instance.get_backfills() == [] and instance.get_dynamic_partitions(symbols_partitions.name) == []
    assert fingerprint(seeded) == before
    ledger.record("bad input", f"POST /api/backfill: {case}", f"400 naming `{field}` ({named}); nothing written")


JUNK = ["FOO|BAR", "btcusdt", "\U0001F680", ""]


def test_invalid_symbols_already_in_the_instance(dagster_env, kline_store, bybit, capsys, ledger):
    """The UI's "add partition" accepts any text; our entry points still answer clearly, never 500."""
    dagster_env.add_dynamic_partitions(symbols_partitions.name, JUNK)
    with serve(create_app(instance=dagster_env, bybit=bybit, store=kline_store)) as url:
        good = requests.post(f"{url}/api/backfill", timeout=15, json={
            "symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"})
        bad = requests.post(f"{url}/api/backfill", timeout=15, json={
            "symbol": "FOO|BAR", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"})
        status = requests.get(f"{url}/api/backfill", timeout=15, params={"type": "status", "id": good.json()["backfill_id"]})
    assert (good.status_code, bad.status_code, status.status_code) == (202, 400, 200)
    assert bad.json()["field"] == "symbol" and "invalid symbol 'FOO|BAR'" in bad.json()["error"]
    assert main(["symbols", "list"]) == 0
    listed = capsys.readouterr()
    assert listed.out.splitlines() == [*JUNK, "BTCUSDT"]
    assert all(f"warning: {s!r} is not a valid symbol" in listed.err for s in JUNK)
    for symbol in JUNK:
        assert main(["symbols", "remove", symbol]) == 0
    assert dagster_env.get_dynamic_partitions(symbols_partitions.name) == ["BTCUSDT"]
    ledger.record("bad input", f"symbol partitions {JUNK} added outside kline-pipeline (the UI)",
                  "API launch of BTCUSDT 202 and its status 200; POST with FOO|BAR 400; `symbols list` warns about "
                  "each; `symbols remove` takes each away")


SQL_CASES = [
    ("CALL refresh_price_klines('price_klines_2h', '2025-01-01', '2025-01-02')", "unknown rollup 'price_klines_2h'"),
    ("CALL refresh_price_klines('price_klines_1h; DROP TABLE price_klines', '2025-01-01', '2025-01-02')", "unknown rollup"),
    ("CALL refresh_price_klines('price_klines_1h', '2025-01-02', '2025-01-01')", "start must be before end"),
    ("CALL refresh_price_klines('price_klines_1h', '2025-01-01', '2025-01-01')", "start must be before end"),
    ("CALL refresh_price_klines('price_klines_1d', '2025-01-01', '2025-01-02', 'btcusdt')", "invalid symbol 'btcusdt'"),
]


@pytest.mark.parametrize(("sql", "named"), SQL_CASES)
def test_manual_refresh_sql(seeded, ledger, sql, named):
    before = fingerprint(seeded)
    raw = seeded.engine().raw_connection()
    try:
        with pytest.raises(psycopg2.errors.InvalidParameterValue, match=named):
            raw.cursor().execute(sql)
        raw.rollback()
    finally:
        raw.close()
    assert fingerprint(seeded) == before
    ledger.record("bad input", f"`{sql}`", f"refused: {named}; tables intact")


def test_unknown_category(monkeypatch, ledger):
    monkeypatch.setenv("BYBIT_CATEGORY", "futures")
    with pytest.raises(ValueError, match=r"invalid Bybit category 'futures': only linear \(or unset\) is allowed"):
        BybitClient().get_instrument(symbol="BTCUSDT")
    ledger.record("bad input", "BYBIT_CATEGORY=futures", "refused before any request, naming the allowed category")
