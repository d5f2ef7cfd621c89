"""Dagster's instance storage on PostgreSQL with a small connection pool per process.

Why: every Dagster event (a planned or recorded materialization, a check result, a log line) is
one write. dagster-postgres opens a new PostgreSQL connection for every statement (NullPool, so
an idle process holds nothing), and on a small machine the connection set-up costs more than the
write: measured on 2 cores (`bench/bench_events.py`), one check evaluation took 26 ms with
NullPool, 21 ms on Dagster's default SQLite storage and 3.4 ms with a pooled connection. A year of
one symbol records ~8,000 such events, so this is most of a backfill's time.

These classes are dagster-postgres's own storages with one change: the engine keeps up to
`pool_size` connections open per process (more are opened for bursts and closed afterwards),
checked with a ping before use, so a restarted database is reconnected to transparently.

Where: `postgres_url` from the config (StringSource, e.g. `{env: DAGSTER_PG_URL}`); if the
config gives none, DAGSTER_PG_URL; if that is unset too, the database `dagster` of the embedded
PostgreSQL that also holds the candles locally (`kline_pipeline/embedded.py`), started on first
use. Schema creation and migrations are dagster-postgres's, unchanged.
"""

import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import sqlalchemy.pool as db_pool
from dagster import Field, IntSource, StringSource
from dagster._core.definitions.asset_key import AssetCheckKey
from dagster._core.definitions.partitions.definition.partitions_definition import PartitionsDefinition
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_state import AssetCheckState
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine

from kline_pipeline.instance.check_events import is_run_check_batch, store_check_evaluation_batch
from kline_pipeline.instance.check_state import CheckStates

DAGSTER_DATABASE = "dagster"
URL_ENV = "DAGSTER_PG_URL"

CONFIG_SCHEMA = {
    "postgres_url": Field(StringSource, is_required=False),
    "pool_size": Field(IntSource, is_required=False, description="connections kept open per process"),
    "max_overflow": Field(IntSource, is_required=False, description="more, opened for bursts and closed after"),
}
MAX_OVERFLOW = 4
"""Per storage and process. A local `dev` runs ~10 processes (webserver, daemon, code servers, up to
4 run workers, the API): ~40 connections held, more only in bursts — under PostgreSQL's default 100."""


def resolve_storage_url(config_value: Mapping[str, Any]) -> str:
    """The configured URL, else DAGSTER_PG_URL, else the embedded server's `dagster` database."""
    url = config_value.get("postgres_url") or os.environ.get(URL_ENV)
    if url:
        return url
    from kline_pipeline.embedded import embedded_database_url

    return embedded_database_url(database=DAGSTER_DATABASE)


class _Pooled:
    """Mixin: replace dagster-postgres's per-statement connections with a small pool."""

    _engine: Any
    postgres_url: str
    POOL_SIZE = 1

    def _use_pool(self, pool_size: int, max_overflow: int) -> None:
        previous = self._engine
        self._engine = create_pg_engine(
            self.postgres_url, None, isolation_level="AUTOCOMMIT", poolclass=db_pool.QueuePool,
            pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, pool_recycle=3600,
        )
        previous.dispose()

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()  # the pooled connections, closed with the instance

    def optimize_for_webserver(self, statement_timeout: int, pool_recycle: int, max_overflow: int) -> None:
        # dagster-postgres swaps in its own webserver engine (one connection kept, a statement
        # timeout); close the pool it replaces instead of leaving its connections to the GC.
        previous = self._engine
        super().optimize_for_webserver(statement_timeout, pool_recycle, max_overflow)  # type: ignore[misc]
        previous.dispose()

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return CONFIG_SCHEMA

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> Any:
        storage = cls(postgres_url=resolve_storage_url(config_value), inst_data=inst_data)  # type: ignore[call-arg]
        storage._use_pool(config_value.get("pool_size", cls.POOL_SIZE), config_value.get("max_overflow", MAX_OVERFLOW))
        return storage


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    """dagster-postgres run storage, pooled (see the module docstring)."""


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    """dagster-postgres event log storage, pooled (see the module docstring)."""

    POOL_SIZE = 2  # the busiest: a run's events, and the daemon's and webserver's reads
    _has_check_tables = False

    @cached_property
    def _check_states(self) -> CheckStates:
        return CheckStates()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Dagster's batch write, which also takes a batch of check results (instance/check_events.py)."""
        if not is_run_check_batch(events):
            super().store_event_batch(events)
            return
        with self.index_transaction() as connection:
            store_check_evaluation_batch(self, connection, events)

    @property
    def supports_asset_checks(self) -> bool:
        # Dagster asks this before storing every check result, and answers with a catalog query
        # (~0.8 ms; 828 results in a 92-day run). The tables, once there, stay: remember a yes.
        if not self._has_check_tables:
            self._has_check_tables = bool(super().supports_asset_checks)
        return self._has_check_tables

    def get_asset_check_state(
        self, keys: Sequence[tuple[AssetCheckKey, PartitionsDefinition | None]],
    ) -> Mapping[AssetCheckKey, AssetCheckState]:
        """A check's per-partition statuses (its Partitions tab, `AssetCheck.partitionStatuses`),
        updated from this process's last answer (instance/check_state.py)."""
        return self._check_states.updated(self, keys)


class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    """dagster-postgres schedule storage, pooled (see the module docstring)."""
