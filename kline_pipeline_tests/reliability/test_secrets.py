"""Secrets and exposure: a database password never reaches events, logs or messages; every server
the project starts binds 127.0.0.1 unless told otherwise."""

import inspect
import re

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from kline_pipeline.api import create_app
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.cli import build_parser, main
from kline_pipeline.dbshell import psql_invocation
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import rollup_assets
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore
from kline_pipeline_tests.helpers import serve


@pytest.fixture(autouse=True)
def _dagster_storage(dagster_storage: str) -> str:
    """Every test here that opens an instance gets its own Dagster storage database (DAGSTER_PG_URL),
    never the embedded server's default one."""
    return dagster_storage

PASSWORD = "Sup3rSecretPw"


def with_password(url: str) -> str:
    # The local server trusts 127.0.0.1, so a password in the URL is accepted and ignored.
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


# Every way a password can sit in KLINE_DATABASE_URL (libpq reads `password` and `sslpassword`
# from the query too). The local server trusts 127.0.0.1: a password is accepted and ignored.
FORMS = {
    "userinfo": lambda url: with_password(url),
    "?password=": lambda url: f"{url}?password={PASSWORD}",
    "?sslpassword=": lambda url: f"{url}?sslpassword={PASSWORD}&sslmode=disable",
}


def unreachable(url: str) -> str:
    return str(url).replace("127.0.0.1:5432", "127.0.0.1:1")


@pytest.mark.parametrize("form", FORMS)
def test_a_password_in_the_database_url_reaches_no_event_or_log(form, database_url, kline_store, bybit, simulator,
                                                                frozen_clock, capfd, monkeypatch, tmp_path, ledger):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("KLINE_DATABASE_URL", FORMS[form](database_url))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT"])
        result = dg.materialize([price_klines_5m, *rollup_assets], instance=instance,
                                partition_key="2025-01-01|BTCUSDT", resources={"bybit": bybit, "kline_store": KlineStore()})
        assert result.success
        records = instance.get_records_for_run(result.run_id).records
        events = " ".join(str(r.event_log_entry) for r in records)
    assert len(records) > 20 and PASSWORD not in events
    assert main(["db", "url"]) == 0 and main(["db", "url", "--libpq"]) == 0
    printed = capfd.readouterr()
    assert "***" in printed.out and PASSWORD not in printed.out + printed.err
    argv, env = psql_invocation(KlineStore().resolved_url(), ["-c", "SELECT 1"])  # what `db psql` runs
    assert PASSWORD not in " ".join(argv) and env.get("PGPASSWORD") == (None if form == "?sslpassword=" else PASSWORD)
    ledger.record("secrets", f"database URL with a password as {form} in KLINE_DATABASE_URL; a full run, "
                  "`kline-pipeline db url [--libpq]` and the psql command line of `db psql`",
                  f"the password is in none of {len(records)} run events, logs or printed output")


@pytest.mark.parametrize("form", FORMS)
def test_an_unreachable_database_is_reported_without_its_password(form, database_url, dagster_env, bybit, capfd,
                                                                  monkeypatch, ledger):
    url = unreachable(FORMS[form](database_url))
    monkeypatch.setenv("KLINE_DATABASE_URL", url)
    range_args = ["--symbol", "BTCUSDT", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-02T00:00:00Z"]
    assert main(["gaps", *range_args]) == 2  # bad configuration, never 1 ("missing")
    cli = capfd.readouterr().err
    with serve(create_app(instance=dagster_env, bybit=bybit, store=KlineStore(database_url=url))) as api:
        answer = requests.get(f"{api}/api/backfill", timeout=30, params={
            "type": "gaps", "symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"})
    assert answer.status_code == 503
    for shown in (cli, answer.json()["error"]):
        assert "cannot reach the candle database at postgresql+psycopg2://" in shown and "***" in shown
        assert PASSWORD not in shown, shown
    ledger.record("secrets", f"unreachable database, password as {form}: `kline-pipeline gaps` and the API's gaps",
                  "exit 2 and HTTP 503 naming the URL with `***`: "
                  + re.sub(r"kline_test_\w+", "DB", answer.json()["error"]))


def test_an_unescaped_at_in_the_password_exposes_no_part_of_it(database_url, bybit, simulator, frozen_clock, capfd,
                                                              monkeypatch, tmp_path, ledger):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    secret = "Sup3r@Secr3t"  # the parser would read `Sup3r` as the password and `Secr3t@127.0.0.1` as the host
    monkeypatch.setenv("KLINE_DATABASE_URL", database_url.replace("postgres@", f"postgres:{secret}@"))
    assert main(["db", "url"]) == 2
    printed = capfd.readouterr()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT"])
        result = dg.materialize([price_klines_5m], instance=instance, partition_key="2025-01-01|BTCUSDT",
                                resources={"bybit": bybit, "kline_store": KlineStore()}, raise_on_error=False)
        events = " ".join(str(r.event_log_entry) for r in instance.get_records_for_run(result.run_id).records)
    assert not result.success and "unescaped '@'" in printed.err and "unescaped '@'" in events
    for fragment in ("Sup3r", "Secr3t"):
        assert fragment not in printed.out + printed.err + events
    ledger.record("secrets", "a password with an unescaped `@` in KLINE_DATABASE_URL: `db url` and a run",
                  "refused (exit 2; the run fails at once) saying to write `@` as %40; no fragment of the password shown")


def test_every_server_binds_loopback_by_default(ledger):
    parser = build_parser()
    servers = {
        "dev": parser.parse_args(["dev"]),
        "serve-api": parser.parse_args(["serve-api"]),
        "simulate-exchange": parser.parse_args(["simulate-exchange"]),
    }
    assert {name: args.host for name, args in servers.items()} == dict.fromkeys(servers, "127.0.0.1")
    assert inspect.signature(BybitSimulator.start).parameters["host"].default == "127.0.0.1"
    sim = BybitSimulator()
    url = sim.start()
    sim.stop()
    assert url.startswith("http://127.0.0.1:")
    ledger.record("exposure", "default bind address of `dev`, `serve-api`, `simulate-exchange` and the simulator",
                  "127.0.0.1 everywhere")
