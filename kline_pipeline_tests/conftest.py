"""Shared fixtures: a throwaway PostgreSQL database per session and the Bybit simulator.

The database is created on the PostgreSQL server at KLINE_TEST_PG_URL (default: the local
server on 127.0.0.1:5432, as `.ci/run` starts it); if none answers, an embedded pgserver in a
temporary directory is used instead. Both are real PostgreSQL.
"""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import WorkspaceFileTarget

from kline_pipeline import clock, store as store_module
from kline_pipeline.api import create_app
from kline_pipeline.bybit import BybitClient
from kline_pipeline.instance.setup import dagster_home
from kline_pipeline.embedded import stop_embedded
from kline_pipeline.home import PROJECT_ROOT
from kline_pipeline.instance.env import EVENT_BATCH_ENV, EVENT_BATCH_SIZE
from kline_pipeline.models import to_ms
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore
from kline_pipeline_tests.helpers import serve

# Tests write Dagster events as production does: materializations in batches (kline-pipeline dev
# and the definitions set the same), whichever modules a test imports.
os.environ.setdefault(EVENT_BATCH_ENV, str(EVENT_BATCH_SIZE))

ADMIN_URL = os.environ.get("KLINE_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")

NOW = datetime(2025, 3, 1, 12, 2, 30, tzinfo=timezone.utc)
"""The frozen "now" shared by the simulator and the pipeline in tests."""

LISTINGS = {
    "BTCUSDT": to_ms(datetime(2020, 3, 30, tzinfo=timezone.utc)),
    "ETHUSDT": to_ms(datetime(2021, 3, 15, tzinfo=timezone.utc)),
    # Listed mid-month (and off midnight) so pre-listing days and a partial listing day exist.
    "NEWUSDT": to_ms(datetime(2025, 1, 15, 8, 0, tzinfo=timezone.utc)),
}


def _admin_url(tmp_root: Path) -> str:
    try:
        with sa.create_engine(ADMIN_URL).connect():
            return ADMIN_URL
    except sa.exc.OperationalError:
        from kline_pipeline.embedded import _server

        return _server(tmp_root / "pgdata").get_uri("postgres").replace("postgresql://", "postgresql+psycopg2://", 1)


@contextmanager
def throwaway_database(admin_url: str, prefix: str, *, template: str | None = None) -> Iterator[str]:
    """URL of a new database on the server of `admin_url` (a copy of database `template` if given),
    dropped (with its engines) afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        for key in [k for k in store_module._engines if sa.make_url(k).database == name]:
            store_module._engines.pop(key).dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test PostgreSQL server's admin database (the local server, else an embedded one)."""
    return _admin_url(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
def database_url(admin_url: str) -> Iterator[str]:
    """URL of a fresh candle database, dropped at the end of the session."""
    with throwaway_database(admin_url, "kline_test") as url:
        yield url


@pytest.fixture(scope="session")
def dagster_storage_template(admin_url: str) -> Iterator[str]:
    """Name of a database holding Dagster's empty storage schema, made once per session."""
    from dagster_postgres.event_log import PostgresEventLogStorage
    from dagster_postgres.run_storage import PostgresRunStorage
    from dagster_postgres.schedule_storage import PostgresScheduleStorage

    with throwaway_database(admin_url, "dagster_template") as url:
        for storage_class in (PostgresRunStorage, PostgresEventLogStorage, PostgresScheduleStorage):
            storage_class(url)  # creates the tables; dagster-postgres holds no connection afterwards
        yield sa.make_url(url).database


@pytest.fixture
def dagster_storage(admin_url: str, dagster_storage_template: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh Dagster storage database for a test that makes its own DAGSTER_HOME from the local
    template: DAGSTER_PG_URL points the template's pooled PostgreSQL storage at it."""
    with throwaway_database(admin_url, "dagster_test", template=dagster_storage_template) as url:
        monkeypatch.setenv("DAGSTER_PG_URL", url)
        yield url


@pytest.fixture
def kline_store(database_url: str) -> KlineStore:
    """The store on the session database, every table emptied before each test."""
    store = KlineStore(database_url=database_url)
    with store.engine().begin() as conn:
        tables = [r[0] for r in conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'price_kline_rollups'")]
        conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))
    return store


@pytest.fixture
def simulator() -> Iterator[BybitSimulator]:
    sim = BybitSimulator(instruments=LISTINGS, now_ms=lambda: to_ms(NOW))
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def bybit(simulator: BybitSimulator) -> BybitClient:
    """A client of the simulator with fast retries (the rate limit is not under test here)."""
    return BybitClient(
        base_url=simulator.url, timeout_seconds=2.0, max_attempts=4,
        backoff_base_seconds=0.01, backoff_max_seconds=0.05, requests_per_second=1000.0,
    )


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Make the pipeline's clock agree with the simulator's."""
    monkeypatch.setattr(clock, "utcnow", lambda: NOW)
    return NOW


# ---------------------------------------------- fixtures shared by several test modules


@pytest.fixture
def dagster_env(tmp_path, monkeypatch, kline_store, database_url, dagster_storage, simulator,
                frozen_clock) -> Iterator[dg.DagsterInstance]:
    """A fresh DAGSTER_HOME (local template) wired to the test database and the simulator."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
    monkeypatch.setenv("BYBIT_BASE_URL", simulator.url)
    monkeypatch.delenv("KLINE_API_MAX_DAYS", raising=False)
    dagster_home()
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def daemon(dagster_env) -> Iterator[object]:
    """A workspace context like the daemon's (the code server subprocess inherits this env)."""
    target = WorkspaceFileTarget([str(PROJECT_ROOT / "workspace.yaml")])
    with create_test_daemon_workspace_context(target, dagster_env) as context:
        yield context


@pytest.fixture
def api(dagster_env: dg.DagsterInstance, bybit: BybitClient, kline_store: KlineStore) -> Iterator[str]:
    """The old HTTP API on dagster_env's instance, served on a free port; its base URL."""
    with serve(create_app(instance=dagster_env, bybit=bybit, store=kline_store)) as url:
        yield url


@pytest.fixture
def pgdata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """KLINE_PGDATA in this test's directory (the embedded server), stopped afterwards."""
    path = tmp_path / "pgdata"
    monkeypatch.setenv("KLINE_PGDATA", str(path))
    monkeypatch.delenv("KLINE_DATABASE_URL", raising=False)
    yield path
    stop_embedded(path)
