"""The `kline-pipeline` command line: symbols, help texts, the simulator command."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import dagster as dg
import pytest

from kline_pipeline.cli import build_parser, main
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import ROLLUPS


@pytest.fixture
def dagster_home(tmp_path, monkeypatch, simulator, dagster_storage):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("BYBIT_BASE_URL", simulator.url)
    return tmp_path


def symbols_in(home) -> list[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_dynamic_partitions(symbols_partitions.name))


def test_symbols_add_and_list(dagster_home, capsys):
    assert main(["symbols", "add", "BTCUSDT", "ETHUSDT"]) == 0
    assert "added: BTCUSDT, ETHUSDT" in capsys.readouterr().out
    assert main(["symbols", "add", "BTCUSDT"]) == 0
    assert "already present: BTCUSDT" in capsys.readouterr().out
    assert main(["symbols", "list"]) == 0
    assert capsys.readouterr().out.split() == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize(
    ("symbols", "named"),
    [(["BTCUSDT", "btcusdt"], "'btcusdt'"), (["ETHUSDT", "NOPEUSDT"], "'NOPEUSDT' is not listed"),
     (["BTC'; DROP TABLE price_klines;--"], "DROP TABLE")],
)
def test_a_bad_symbol_adds_nothing_and_names_it(dagster_home, capsys, symbols, named):
    assert main(["symbols", "add", *symbols]) == 2
    err = capsys.readouterr().err
    assert named in err and "nothing was added" in err
    assert symbols_in(dagster_home) == []


@pytest.mark.parametrize("command", [[], ["symbols"], ["symbols", "add"], ["simulate-exchange"], ["dev"], ["db"]])
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: kline-pipeline" in text and len(text.splitlines()) > 4


def test_simulate_exchange_serves_bybit_shapes():
    with socket.socket() as sock:  # a free port for the subprocess
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kline_pipeline.cli", "simulate-exchange", "--port", str(port),
         "--instrument", "NEWUSDT:2025-01-15"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/v5/market/instruments-info?category=linear&symbol=NEWUSDT"
        for _ in range(100):
            try:
                body = json.load(urllib.request.urlopen(url, timeout=2))
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"simulator did not answer: {proc.stdout.read() if proc.poll() is not None else ''}")
        assert body["retCode"] == 0 and body["result"]["list"][0]["launchTime"] == "1736899200000"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_fresh_dagster_home_gets_the_local_instance_template(dagster_home, dagster_storage, capsys):
    """Local mode writes kline_pipeline/instance/local.yaml (pooled PostgreSQL storage, same queue and
    pools as production); DAGSTER_PG_URL (here: the test's database) says where the storage lives."""
    assert main(["symbols", "list"]) == 0  # writes the local template into the fresh DAGSTER_HOME
    assert "local.yaml" in capsys.readouterr().err
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        sizes = {}
        for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
            assert type(storage).__name__.startswith("PooledPostgres")
            assert type(storage._engine.pool).__name__ == "QueuePool"
            sizes[type(storage).__name__] = storage._engine.pool.size()
        assert sizes == {"PooledPostgresRunStorage": 1, "PooledPostgresEventLogStorage": 2,
                         "PooledPostgresScheduleStorage": 1}
        assert instance.event_log_storage.postgres_url == dagster_storage
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 2
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4


ROLLUP_TABLES = [rollup.table for rollup in ROLLUPS]
TABLES = ["price_klines", *ROLLUP_TABLES, "price_kline_gaps", "price_kline_listings", "price_kline_live_state"]


def rows_of(store, symbol: str) -> dict[str, int]:
    with store.engine().connect() as conn:
        return {t: conn.exec_driver_sql(f'SELECT count(*) FROM "{t}" WHERE symbol = %(s)s', {"s": symbol}).scalar()
                for t in TABLES}


@pytest.fixture
def stored_symbols(dagster_home, kline_store, database_url, monkeypatch):
    """BTCUSDT and ETHUSDT with two days each in every table (an outage recorded for BTCUSDT, a live tick)."""
    from datetime import date, datetime, timezone

    from kline_pipeline.bybit import BybitClient
    from kline_pipeline.ingest import ingest_days
    from kline_pipeline.models import to_ms
    from kline_pipeline.simulator import BybitSimulator
    from kline_pipeline_tests.conftest import LISTINGS, NOW

    monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
    jan1 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    sim = BybitSimulator(instruments=LISTINGS, now_ms=lambda: to_ms(NOW),
                         outages=[("BTCUSDT", to_ms(jan1) + 3_600_000, to_ms(jan1) + 7_200_000)])
    sim.start()
    try:
        client = BybitClient(base_url=sim.url, requests_per_second=1000.0)
        for symbol in ("BTCUSDT", "ETHUSDT"):
            ingest_days(bybit=client, store=kline_store, symbol=symbol, days=[date(2025, 1, 1), date(2025, 1, 2)], now=NOW)
            for rollup in ROLLUP_TABLES:
                kline_store.refresh_rollup(rollup=rollup, symbol=symbol, start=jan1, end=datetime(2025, 1, 3, tzinfo=timezone.utc))
        kline_store.record_live_ticks(at=NOW, errors={"BTCUSDT": None, "ETHUSDT": None})
    finally:
        sim.stop()
    assert main(["symbols", "add", "BTCUSDT", "ETHUSDT"]) == 0
    return kline_store


def test_symbols_remove_keeps_the_data_and_purge_deletes_it(stored_symbols, dagster_home, capsys):
    kept = rows_of(stored_symbols, "BTCUSDT")
    assert all(kept.values())  # every table holds rows of BTCUSDT
    capsys.readouterr()
    assert main(["symbols", "remove", "BTCUSDT"]) == 0
    assert "BTCUSDT: removed the symbol partition; its stored candles and rollups are kept" in capsys.readouterr().out
    assert symbols_in(dagster_home) == ["ETHUSDT"] and rows_of(stored_symbols, "BTCUSDT") == kept
    assert main(["symbols", "remove", "BTCUSDT", "--purge"]) == 0  # the partition is gone already; the data goes now
    assert kept["price_klines"] == 2 * 288 - 12 and kept["price_kline_gaps"] == 1  # the outage hour has no candles
    assert capsys.readouterr().out == ("BTCUSDT: no symbol partition to remove; rows deleted: "
                                       + ", ".join(f"{table} {count}" for table, count in kept.items()) + "\n")
    assert rows_of(stored_symbols, "BTCUSDT") == dict.fromkeys(TABLES, 0)
    ethusdt = rows_of(stored_symbols, "ETHUSDT")
    assert main(["symbols", "remove", "ETHUSDT", "--purge"]) == 0
    assert symbols_in(dagster_home) == [] and rows_of(stored_symbols, "ETHUSDT") == dict.fromkeys(TABLES, 0)
    assert ethusdt["price_klines"] == 576


def test_symbols_remove_is_refused_while_a_backfill_works_on_it(stored_symbols, dagster_home, capsys):
    assert main(["backfill", "--symbol", "ETHUSDT", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-02T00:00:00Z"]) == 0
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        backfill_id = instance.get_backfills()[0].backfill_id
    before = rows_of(stored_symbols, "ETHUSDT")
    assert main(["symbols", "remove", "ETHUSDT", "--purge"]) == 2
    assert f"'ETHUSDT' is still being worked on by backfill {backfill_id}; cancel" in capsys.readouterr().err
    assert symbols_in(dagster_home) == ["BTCUSDT", "ETHUSDT"] and rows_of(stored_symbols, "ETHUSDT") == before
