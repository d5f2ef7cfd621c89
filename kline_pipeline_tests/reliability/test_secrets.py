"""Secrets and exposure: a database password never reaches events, logs or messages; every server
the project starts binds 127.0.0.1 unless told otherwise."""

import inspect

import dagster as dg
import sqlalchemy as sa

from kline_pipeline.assets import price_klines_5m
from kline_pipeline.cli import build_parser, main
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import rollup_assets
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore

PASSWORD = "Sup3rSecretPw"


def with_password(url: str) -> str:
    # The local server trusts 127.0.0.1, so a password in the URL is accepted and ignored.
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_a_password_in_the_database_url_reaches_no_event_or_log(database_url, kline_store, bybit, simulator,
                                                                frozen_clock, capfd, monkeypatch, ledger):
    monkeypatch.setenv("KLINE_DATABASE_URL", with_password(database_url))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT"])
        result = dg.materialize([price_klines_5m, *rollup_assets], instance=instance,
                                partition_key="2025-01-01|BTCUSDT", resources={"bybit": bybit, "kline_store": KlineStore()})
        assert result.success
        records = instance.get_records_for_run(result.run_id).records
        events = " ".join(str(r.event_log_entry) for r in records)
    assert len(records) > 20 and PASSWORD not in events
    assert main(["db", "url"]) == 0
    printed = capfd.readouterr()
    assert "***" in printed.out and PASSWORD not in printed.out + printed.err
    ledger.record("secrets", "database URL with a password in KLINE_DATABASE_URL; a full run and `kline-pipeline db url`",
                  f"the password is in none of {len(records)} run events, logs or printed output")


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
