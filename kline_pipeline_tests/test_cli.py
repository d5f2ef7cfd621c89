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
