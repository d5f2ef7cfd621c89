"""`kline-pipeline doctor` and `GET /api/health` against a real set-up, healthy and broken.

One set-up for the module: a DAGSTER_HOME with the local template, a throwaway candle database,
the exchange simulator as its own process (wall clock), BTCUSDT added and brought up to date by
a live tick, and a real `dagster-daemon run` on that home. Then, in this order: healthy; the
sensor stopped (and started again); a stale symbol (the exchange stops delivering ETHUSDT); the
daemon stopped (judged three minutes later on the clock: heartbeats come every 30 s). Homes where
no daemon ever ran or no instance exists are checked on their own.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import requests

from kline_pipeline import clock
from kline_pipeline.api import create_app
from kline_pipeline.bybit import BybitClient
from kline_pipeline.cli import main
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.schedules import live_refresh_job
from kline_pipeline.store import KlineStore
from kline_pipeline_tests.conftest import throwaway_database
from kline_pipeline_tests.processes import ROOT, simulator_process, stop_group
from kline_pipeline_tests.helpers import serve

UTC = timezone.utc


def live_tick(store: KlineStore, simulator_url: str) -> None:
    """One live_refresh run in this process, on the instance of DAGSTER_HOME (a real run record)."""
    resources = {"bybit": BybitClient(base_url=simulator_url, requests_per_second=1000), "kline_store": store}
    job = dg.Definitions(jobs=[live_refresh_job], resources=resources).resolve_job_def(live_refresh_job.name)
    with dg.DagsterInstance.get() as instance:
        assert job.execute_in_process(instance=instance).success


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`kline-pipeline doctor` as a user runs it, in its own process."""
    return subprocess.run([sys.executable, "-m", "kline_pipeline.cli", "doctor", *args], env=env, cwd="/",
                          capture_output=True, text=True, timeout=180)


def line(output: str, label: str) -> str:
    (found,) = [row for row in output.splitlines() if row.strip().startswith(label + " ")]
    return " ".join(found.split())


class Setup:
    def __init__(self, home: Path, store: KlineStore, simulator_url: str, env: dict[str, str]) -> None:
        self.home, self.store, self.simulator_url, self.env = home, store, simulator_url, env
        self.daemon: subprocess.Popen | None = None

    def dagster_cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "dagster", *args, "-w", str(ROOT / "workspace.yaml")], cwd=ROOT,
                       env=self.env, check=True, capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, admin_url: str, dagster_storage_template: str) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("doctor")
    now = datetime.now(UTC)
    # From three hours ago on, the exchange has no ETHUSDT candles: a symbol that goes stale.
    outage = f"ETHUSDT:{now - timedelta(hours=3):%Y-%m-%dT%H:%MZ}/{now + timedelta(days=1):%Y-%m-%dT%H:%MZ}"
    with throwaway_database(admin_url, "kline_doctor") as url, \
            throwaway_database(admin_url, "dagster_doctor", template=dagster_storage_template) as storage, \
            simulator_process(root / "simulator.log", "--outage", outage) as simulator_url, \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        patch.setenv("DAGSTER_PG_URL", storage)  # the daemon's and the CLI's Dagster storage
        patch.setenv("KLINE_DATABASE_URL", url)
        patch.setenv("BYBIT_BASE_URL", simulator_url)
        setup = Setup(root / "dagster_home", KlineStore(database_url=url), simulator_url, dict(os.environ))
        assert main(["symbols", "add", "BTCUSDT"]) == 0
        live_tick(setup.store, simulator_url)
        with (root / "daemon.log").open("wb") as log:
            setup.daemon = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                cwd=setup.home, env=setup.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with dg.DagsterInstance.get() as instance:
                deadline = time.monotonic() + 120
                required = set(instance.get_required_daemon_types())
                while not required <= set(instance.get_daemon_heartbeats()):
                    assert setup.daemon.poll() is None, (root / "daemon.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "the daemon sent no heartbeats within 120 s"
                    time.sleep(1)
            yield setup
        finally:
            stop_group(setup.daemon)


def test_a_healthy_setup_exits_0_and_says_so(setup):
    result = doctor(setup.env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.splitlines()[-1] == "healthy"
    assert line(out, "daemon").startswith("daemon ok 7 running (SENSOR, BACKFILL, SCHEDULER, QUEUED_RUN_COORDINATOR, "
                                          "MONITORING, ASSET, FRESHNESS_DAEMON)")
    assert line(out, "sensor rollup_refresh_sensor").startswith("sensor rollup_refresh_sensor ok running")
    assert line(out, "schedule live_refresh").startswith("schedule live_refresh ok running")
    assert line(out, "sensor cancel_sensor").startswith("sensor cancel_sensor ok running")
    assert line(out, "candles BTCUSDT").startswith("candles BTCUSDT ok newest candle closed ")
    assert line(out, "gaps BTCUSDT").startswith("gaps BTCUSDT ok no missing candle since ")
    assert line(out, "runs").startswith("runs ok last hour: ") and " 0 failed" in line(out, "runs")
    assert line(out, "pool bybit_api").startswith("pool bybit_api ok limit 2, ")
    assert f"DAGSTER_HOME={setup.home} (set by DAGSTER_HOME" in result.stderr

    report = json.loads(doctor(setup.env, "--json").stdout)
    assert (report["status"], report["exit_code"], report["problems"], report["unknown"]) == ("healthy", 0, [], [])
    candles = next(f for f in report["findings"] if f["section"] == "candles")
    assert candles["name"] == "BTCUSDT" and candles["age_minutes"] <= candles["limit_minutes"] == 15

    with dg.DagsterInstance.get() as instance, serve(create_app(instance=instance, store=setup.store)) as api:
        health = requests.get(f"{api}/api/health", timeout=60)
    assert health.status_code == 200 and health.json()["status"] == "healthy"


def test_a_stopped_sensor_is_a_problem_named_with_how_to_start_it(setup):
    setup.dagster_cli("sensor", "stop", "rollup_refresh_sensor")
    try:
        result = doctor(setup.env)
        assert result.returncode == 1
        assert line(result.stdout, "sensor rollup_refresh_sensor") == (
            "sensor rollup_refresh_sensor problem stopped: start it in the UI (Automation -> rollup_refresh_sensor) "
            "or with `dagster sensor start rollup_refresh_sensor -w workspace.yaml`")
        assert result.stdout.splitlines()[-1] == "1 problem(s): sensor rollup_refresh_sensor"
    finally:
        setup.dagster_cli("sensor", "start", "rollup_refresh_sensor")
    again = doctor(setup.env)
    assert again.returncode == 0, again.stdout


def test_a_symbol_the_exchange_stopped_delivering_is_stale(setup):
    assert main(["symbols", "add", "ETHUSDT"]) == 0
    try:
        live_tick(setup.store, setup.simulator_url)  # fetches ETHUSDT up to the outage, records the outage
        result = doctor(setup.env, "--json")
        assert result.returncode == 1
        report = json.loads(result.stdout)
        findings = {(f["section"], f["name"]): f for f in report["findings"]}
        stale = findings[("candles", "ETHUSDT")]
        assert stale["state"] == "problem" and 175 <= stale["age_minutes"] <= 200
        assert stale["detail"].startswith("newest candle closed ") and stale["detail"].endswith(" ago (limit 15 min)")
        # The hole is the exchange's (recorded at ingest), not missing data.
        assert findings[("gaps", "ETHUSDT")]["state"] == "ok"
        assert findings[("gaps", "ETHUSDT")]["exchange_outage_candles"] >= 30
        assert report["problems"] == [f"candles ETHUSDT: {stale['detail']}"]
    finally:
        with dg.DagsterInstance.get() as instance:
            instance.delete_dynamic_partition(symbols_partitions.name, "ETHUSDT")


def test_a_stopped_daemon_is_a_problem_once_its_heartbeats_are_late(setup, monkeypatch, capsys):
    stop_group(setup.daemon)
    later = datetime.now(UTC) + timedelta(minutes=3)
    monkeypatch.setattr(clock, "utcnow", lambda: later)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert line(out, "daemon").startswith("daemon problem last heartbeat of SENSOR, BACKFILL, SCHEDULER, ")
    assert "the daemon is not running; start `kline-pipeline dev`, or `dagster-daemon run -w workspace.yaml`" in out
    assert line(out, "candles BTCUSDT").startswith("candles BTCUSDT ok ")
    with dg.DagsterInstance.get() as instance, \
            serve(create_app(instance=instance, store=setup.store, now=lambda: later)) as api:
        health = requests.get(f"{api}/api/health", timeout=60)
    assert health.status_code == 503 and health.json()["status"] == "problems"
    assert health.json()["problems"][0].startswith("daemon: last heartbeat of SENSOR, ")


def test_where_no_daemon_ever_ran_and_nothing_was_added(tmp_path, monkeypatch, database_url, dagster_storage, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
    assert main(["symbols", "list"]) == 0  # the instance exists, nothing else
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert line(out, "daemon").startswith("daemon problem no heartbeat ever from SENSOR, BACKFILL, ")
    assert line(out, "symbols") == ("symbols unknown no symbol added yet, nothing to check: `kline-pipeline symbols add "
                                    "BTCUSDT` (offline: see README, Offline mode)")
    assert line(out, "sensor rollup_refresh_sensor") == "sensor rollup_refresh_sensor ok running; no tick yet"


def test_without_an_instance_it_cannot_tell_and_creates_nothing(tmp_path, monkeypatch, capsys):
    home = tmp_path / "nothing_here"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["doctor", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "unknown" and report["unknown"] == [
        f"dagster instance: no instance at DAGSTER_HOME={home} (set by DAGSTER_HOME): nothing ran there yet; "
        "start `kline-pipeline dev`"]
    assert not home.exists()
