"""The newcomer's path through the README, one test per trap that was hit on it.

psql and the embedded database; one DAGSTER_HOME whatever the current directory; links that
follow `dev --port`; output without warning blocks or the misleading "dagster.yaml in the current
folder" message; a second `dev` refused naming the first; the offline simulator named when Bybit
cannot be reached; `gaps` saying a symbol is not added.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from kline_pipeline.cli import main
from kline_pipeline.dbshell import psql_binary, psql_invocation
from kline_pipeline.home import PROJECT_ROOT, dev_lock, resolve_dagster_home, running_dev
from kline_pipeline_tests.conftest import _admin_url, throwaway_database
from kline_pipeline_tests.processes import free_port, simulator_process, stop_group, wait_for_http
from kline_pipeline_tests.test_timescaledb_compat import JOBS


@pytest.fixture(autouse=True)
def _dagster_storage(dagster_storage: str) -> str:
    """Every test here that opens an instance gets its own Dagster storage database (DAGSTER_PG_URL),
    never the embedded server's default one."""
    return dagster_storage

CLI = [sys.executable, "-m", "kline_pipeline.cli"]


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def user_env(**values: str) -> dict[str, str]:
    """This environment as a user's shell has it: none of the variables kline-pipeline sets for itself."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KLINE_UI_URL", "KLINE_QUIET_WARNINGS", "KLINE_DAGSTER_HOME_SHOWN", "PYTHONWARNINGS")}
    return {**env, **values}


# --------------------------------------------------------------------------- psql


def test_db_url_libpq_is_what_psql_takes_and_db_psql_runs_the_seed_sql(database_url, tmp_path):
    env = user_env(DAGSTER_HOME=str(tmp_path / "home"), KLINE_DATABASE_URL=database_url)
    url = cli("db", "url", "--libpq", env=env, cwd=tmp_path).stdout.strip()
    assert url.startswith("postgresql://") and "+psycopg2" not in url
    ran = subprocess.run([psql_binary(), url, "-tAc", "SELECT 6 * 7"], capture_output=True, text=True, timeout=60)
    assert ran.stdout.strip() == "42", ran.stderr
    jobs = cli("db", "psql", "-c", JOBS, env=env, cwd=tmp_path)
    assert jobs.returncode == 0 and "policy_refresh_continuous_aggregate" in jobs.stdout
    assert jobs.stdout.rstrip().endswith("(6 rows)")


def test_a_password_never_reaches_the_output_or_psqls_command_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("KLINE_DATABASE_URL", "postgresql://bob:s3cret@db.example:5432/kline")
    assert main(["db", "url", "--libpq"]) == 0
    assert capsys.readouterr().out.strip() == "postgresql://bob@db.example:5432/kline"
    argv, env = psql_invocation("postgresql+psycopg2://bob:s3cret@db.example:5432/kline", ["-c", "SELECT 1"])
    assert argv[1:] == ["postgresql://bob@db.example:5432/kline", "-c", "SELECT 1"] and env["PGPASSWORD"] == "s3cret"


def test_the_embedded_database_opens_in_psql_with_the_schema_applied(pgdata, tmp_path):
    env = user_env(DAGSTER_HOME=str(tmp_path / "home"), KLINE_PGDATA=str(pgdata))
    env.pop("KLINE_DATABASE_URL", None)
    url = cli("db", "url", "--libpq", env=env, cwd=tmp_path).stdout.strip()
    assert url.startswith("postgresql://postgres@/kline?host=")  # no driver, no empty password
    count = cli("db", "psql", "-tAc", "SELECT count(*) FROM timescaledb_information.continuous_aggregates",
                env=env, cwd=tmp_path)
    assert count.returncode == 0 and count.stdout.strip() == "6", count.stderr


# --------------------------------------------------------------------------- DAGSTER_HOME


def test_one_dagster_home_whatever_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    home = resolve_dagster_home()
    assert (home.path, home.why) == (PROJECT_ROOT / ".dagster_home", "this checkout's default")
    # An installed package (no workspace.yaml beside it): the per-user home, not the current directory.
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    installed = resolve_dagster_home(root=tmp_path / "site-packages")
    assert (installed.path, installed.why) == (tmp_path / "user" / ".kline_pipeline" / "dagster_home",
                                               "the per-user default")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mine"))
    assert resolve_dagster_home() == type(home)(tmp_path / "mine", "set by DAGSTER_HOME")


def test_every_command_says_which_home_it_uses_and_leaves_the_current_directory_alone(tmp_path):
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    result = cli("symbols", "list", env=user_env(DAGSTER_HOME=str(tmp_path / "home")), cwd=elsewhere)
    assert result.returncode == 0
    assert result.stderr.splitlines()[0] == (
        f"DAGSTER_HOME={tmp_path / 'home'} (set by DAGSTER_HOME; set DAGSTER_HOME to use another)")
    assert list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------- quiet output


def test_no_warning_blocks_precede_a_commands_output(tmp_path):
    env = user_env(DAGSTER_HOME=str(tmp_path / "none"))
    quiet = cli("doctor", env=env, cwd=tmp_path)  # imports every definition, exits 2 (no instance)
    assert quiet.returncode == 2
    assert quiet.stderr == "" and "Warning" not in quiet.stdout
    loud = cli("doctor", env={**env, "KLINE_QUIET_WARNINGS": "0"}, cwd=tmp_path)
    assert "BetaWarning" in loud.stderr and "PreviewWarning" in loud.stderr


# --------------------------------------------------------------------------- dev


def test_dev_refuses_a_second_one_and_its_links_follow_its_port(tmp_path):
    ui, api = free_port(), free_port()
    log = tmp_path / "dev.log"
    with throwaway_database(_admin_url(tmp_path), "kline_newcomer") as url, \
            simulator_process(tmp_path / "simulator.log") as simulator_url:
        env = user_env(DAGSTER_HOME=str(tmp_path / "home"), KLINE_DATABASE_URL=url, BYBIT_BASE_URL=simulator_url)
        with log.open("wb") as out:
            first = subprocess.Popen([*CLI, "dev", "--port", str(ui), "--api-port", str(api)], env=env, cwd=tmp_path,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_http(f"http://127.0.0.1:{ui}/server_info", first, log, timeout=180)
            second = cli("dev", "--port", str(free_port()), "--api-port", str(free_port()), env=env, cwd=tmp_path)
            assert second.returncode == 1
            assert (f"error: kline-pipeline dev is already running on DAGSTER_HOME={tmp_path / 'home'} "
                    f"(pid {first.pid}, UI http://127.0.0.1:{ui}, old API http://127.0.0.1:{api}/api/backfill") in second.stderr
            launched = requests.post(f"http://127.0.0.1:{api}/api/backfill", timeout=60, json={
                "symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"})
            assert launched.json()["ui_url"] == f"http://127.0.0.1:{ui}/runs/b/{launched.json()['backfill_id']}"
            backfill = cli("backfill", "--symbol", "BTCUSDT", "--start", "2025-01-02T00:00:00Z", "--end",
                           "2025-01-03T00:00:00Z", env=env, cwd=tmp_path)
            assert f"UI: http://127.0.0.1:{ui}/runs/b/" in backfill.stdout
        finally:
            stop_group(first)
    output = log.read_text(errors="replace")
    assert "Warning" not in output and "will not be used" not in output
    assert output.count("DAGSTER_HOME=") == 1  # said once, not again by the API child
    assert running_dev(tmp_path / "home") is None  # the lock went with the process


def test_dev_refuses_ports_in_use_naming_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dev", "--port", str(port), "--api-port", str(free_port())]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: already in use on 127.0.0.1: --port {port} (another kline-pipeline dev, dagster dev or program); "
        "stop it or choose other ports; nothing was started")


def test_a_running_devs_ui_is_where_cli_links_point(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.delenv("KLINE_UI_URL", raising=False)
    assert running_dev(tmp_path) is None
    with dev_lock(tmp_path, {"pid": 4242, "ui_url": "http://127.0.0.1:4111", "api_url": None}):
        assert running_dev(tmp_path)["ui_url"] == "http://127.0.0.1:4111"
        main(["symbols", "list"])
        assert os.environ["KLINE_UI_URL"] == "http://127.0.0.1:4111"
    assert running_dev(tmp_path) is None  # the file stays, the lock does not
    assert json.loads((tmp_path / "kline-dev.lock").read_text())["pid"] == 4242


# --------------------------------------------------------------------------- symbols and gaps


def test_an_unreachable_exchange_names_the_offline_simulator(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("BYBIT_BASE_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert main(["symbols", "add", "BTCUSDT"]) == 2
    err = capsys.readouterr().err
    assert "connection error" in err and "nothing was added" in err
    assert "kline-pipeline simulate-exchange --port 8765 &\n  export BYBIT_BASE_URL=http://127.0.0.1:8765" in err


def test_gaps_of_a_symbol_never_added_says_so(dagster_env, capsys):
    args = ["--start", "2025-01-01T00:00:00Z", "--end", "2025-01-02T00:00:00Z"]
    assert main(["gaps", "--symbol", "XRPUSDT", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines()[-1].startswith(
        "error: XRPUSDT is not added, so nothing fetches or stores its candles: add it with "
        "`kline-pipeline symbols add XRPUSDT`")
    assert main(["symbols", "add", "XRPUSDT"]) == 2  # not listed on the simulator: still not added
    assert main(["symbols", "add", "ETHUSDT"]) == 0
    assert main(["gaps", "--symbol", "ETHUSDT", *args]) == 1  # added, not fetched yet: missing, as before
    assert "missing 288" in capsys.readouterr().out
