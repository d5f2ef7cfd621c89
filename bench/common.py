"""Helpers shared by the benchmark scripts: a throwaway database and fast loading of candles."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import sqlalchemy as sa

from kline_pipeline.ingest import day_start
from kline_pipeline.models import Candle, to_ms
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore

DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def admin_url_default() -> str:
    return os.environ.get("KLINE_TEST_PG_URL", DEFAULT_ADMIN_URL)


@contextmanager
def throwaway_database(admin_url: str, label: str) -> Iterator[str]:
    """The URL of a new, empty database (for processes we start), dropped afterwards."""
    name = f"kline_bench_{label}_{os.getpid()}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def throwaway_store(admin_url: str, label: str) -> Iterator[KlineStore]:
    """A KlineStore on a new database, dropped afterwards."""
    with throwaway_database(admin_url, label) as url:
        store = KlineStore(database_url=url)
        try:
            yield store
        finally:
            store.engine().dispose()  # before the drop: it refuses while sessions are open


def load_days(store: KlineStore, sim: BybitSimulator, symbol: str, first: date, days: int) -> int:
    """Write `days` days of the simulator's candles directly (no HTTP: for SQL benchmarks)."""
    total = 0
    with store.day_writer() as writer:
        for i in range(days):
            start = day_start(first + timedelta(days=i))
            rows = sim.candles(symbol, to_ms(start), to_ms(start + timedelta(days=1)))
            candles = [Candle(int(r[0]), *r[1:7]) for r in rows]
            writer.write_day(symbol=symbol, start=start, end=start + timedelta(days=1), candles=candles)
            total += len(candles)
    with store.engine().begin() as conn:
        conn.exec_driver_sql("ANALYZE price_klines")
    return total


def analyze_unless_autovacuum(url: str) -> bool:
    """ANALYZE the database at `url` if its server runs without autovacuum; True if it did.

    A default PostgreSQL refreshes a table's planner statistics on its own after it grew by 10%
    (autovacuum); with autovacuum off, as on this development machine's server (`SHOW
    autovacuum`), a table that grew from nothing during a benchmark keeps "empty" statistics and
    Dagster's own queries on it get plans for an empty table (a check's Partitions tab: seconds
    instead of tens of milliseconds). Timings are meant for a server as deployed.
    """
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.exec_driver_sql("SHOW autovacuum").scalar() == "on":
                return False
            conn.exec_driver_sql("ANALYZE")
            return True
    finally:
        engine.dispose()
