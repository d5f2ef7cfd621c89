"""The embedded PostgreSQL used when KLINE_DATABASE_URL is unset.

`pgserver` ships PostgreSQL 16 binaries in its wheel. It serialises start-up with an
inter-process lock and reuses a server already running on the data directory (it reads
`postmaster.pid`), so many run processes starting at once share one server and a data
directory is never served twice. We start it with cleanup_mode=None: it keeps running after
the process that started it exits, like a local service, so each Dagster run does not pay a
start/stop; `kline-pipeline db stop` stops it. Data lives on disk and survives restarts.
"""

import os
import threading
from pathlib import Path
from typing import Any

import psutil
import psycopg2
from psycopg2 import sql
from psycopg2 import errors as pg_errors

DATABASE_NAME = "kline"


def default_pgdata() -> Path:
    """KLINE_PGDATA, else $DAGSTER_HOME/kline_pgdata, else ~/.kline_pipeline/pgdata."""
    if os.environ.get("KLINE_PGDATA"):
        return Path(os.environ["KLINE_PGDATA"]).expanduser()
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).expanduser() / "kline_pgdata"
    return Path.home() / ".kline_pipeline" / "pgdata"


def _alive(process: psutil.Process | None) -> bool:
    # A stopped postmaster can linger as a zombie where nothing reaps orphans; that is not running.
    try:
        return process is not None and process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _server(pgdata: Path) -> Any:  # a pgserver.PostgresServer (pgserver has no type information)
    import pgserver  # imported lazily: only the embedded mode needs it
    from pgserver.postgres_server import PostgresServer

    pgdata = pgdata.expanduser().resolve()
    # Created here, not by pgserver: its get_server checks `exists()` then mkdir(exist_ok=False),
    # so processes starting at once on a new directory could fail with FileExistsError (seen in
    # CI: one of three). An empty directory is what get_server itself would create; pgserver's
    # inter-process lock then serialises initdb and the start.
    pgdata.mkdir(parents=True, exist_ok=True)
    cached = PostgresServer._instances.get(pgdata)
    # pgserver caches one handle per directory per process; if the server was stopped since
    # (`kline-pipeline db stop`, a crash), that handle is stale and must not be reused.
    if cached is not None and not _alive(cached.get_postmaster_info().process):
        PostgresServer._instances.pop(pgdata, None)
    return pgserver.get_server(pgdata, cleanup_mode=None)


_urls: dict[tuple[Path, str], tuple[str, object]] = {}
_urls_lock = threading.Lock()


def embedded_database_url(pgdata: Path | None = None, *, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded server and return a psycopg2 URL of `database` on it (created
    if missing): `kline` holds the candles, `dagster` Dagster's own storage (instance/storage.py).

    Every query of the store asks for the URL; while the server that answered last time still
    runs, the answer is remembered for the process (a check of its postmaster, no connection)."""
    pgdata = (pgdata or default_pgdata()).expanduser().resolve()
    with _urls_lock:
        known = _urls.get((pgdata, database))
        if known and _alive(known[1]):
            return known[0]
        url, postmaster = _resolve(pgdata, database)
        _urls[(pgdata, database)] = (url, postmaster)
        return url


def _resolve(pgdata: Path, database: str) -> tuple[str, object]:
    server = _server(pgdata)
    admin_dsn = server.get_uri("postgres")
    conn = psycopg2.connect(admin_dsn)
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                except (pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                    pass  # another process created it between our check and our CREATE
    finally:
        conn.close()
    url = server.get_uri(database).replace("postgresql://", "postgresql+psycopg2://", 1)
    return url, server.get_postmaster_info().process


def stop_embedded(pgdata: Path | None = None) -> bool:
    """Stop the embedded server on `pgdata` if one runs there; True if it was stopped."""
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import (setattr per binary)
    from pgserver.utils import PostmasterInfo

    pgdata = (pgdata or default_pgdata()).expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop"], pgdata=pgdata, user=user)
    return True
