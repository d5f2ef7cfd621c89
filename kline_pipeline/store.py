"""The candle store: a PostgreSQL resource that owns the schema, the bulk write path and every read.

`KlineStore` is the one gateway to the candle database. Its writes are here; its typed reads come
from `StoreReads` (store_reads.py), which return frozen dataclasses (re-exported here), so no caller
reads a row by position.
"""

import io
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import dagster as dg
import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from kline_pipeline import clock
from kline_pipeline.models import Candle, Instrument
from kline_pipeline.event_writes import Metadata
from kline_pipeline.sqlfiles import schema_files, sql_text
from kline_pipeline.store_reads import (
    GapContext,
    GapHoles,
    LiveState,
    PartialBucket,
    RepairAttempt,
    RollupBucket,
    RollupMismatch,
    StoredSummary,
    StoreReads,
    SymbolSpan,
    Violation,
)

__all__ = [  # the read model, importable from here as before it had its own module
    "GapContext", "GapHoles", "LiveState", "PartialBucket", "RepairAttempt", "RollupBucket", "RollupMismatch",
    "StoredSummary", "SymbolSpan", "Violation",
    "DayWrite", "DayWriter", "FreshReports", "KlineStore", "RollupDay", "RollupSummary", "normalize_database_url",
    "redact_url",
]

# Any constant works; it only has to be the same in every process applying the schema.
SCHEMA_LOCK_KEY = 7_415_826_001


def normalize_database_url(url: str) -> str:
    """Force the psycopg2 driver: SQLAlchemy 2.1 maps plain `postgresql://` to psycopg 3.

    Errors never repeat the URL: it may hold a password.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("invalid database URL: expected postgresql://user:password@host:port/dbname") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):  # postgres:// is libpq's alias
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: expected postgresql:// or postgresql+psycopg2://"
        )
    if parsed.host and "@" in parsed.host:
        # `user:p@ss@host`: the parser takes `p` as the password and `ss@host` as the host, so
        # the connection would go nowhere and its error would print part of the password.
        raise ValueError("invalid database URL: its password contains an unescaped '@'; write each '@' "
                         "in the password as %40 (a password p@ss is written p%40ss)")
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


# `password=…`, `sslpassword=…` and `PGPASSWORD=…` in a URL query, a libpq keyword DSN or an
# environment dump; the value ends at whitespace, `&`, `;` or a `:` that ends a phrase ("at URL:
# reason") unless quoted.
_SECRET_SETTING = re.compile(
    r"""(?i)\b((?:ssl)?password|pgpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|"[^"]*"|(?:[^\s&;'":]|:(?!\s|$))*)""")
# The password of a URL's userinfo: from `scheme://user:` to the LAST `@` of the same word, so
# an unescaped `@` inside the password is hidden too.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)\S*@")
_SECRET_ENV = ("PGPASSWORD", "KLINE_DATABASE_URL", "DAGSTER_PG_URL")
MIN_SECRET_LENGTH = 4
"""Known secrets shorter than this are not searched for verbatim (it would mask ordinary text)."""


def _known_secrets() -> set[str]:
    """Passwords configured in this process's environment, as written and URL-decoded."""
    found: set[str] = set()
    for name in _SECRET_ENV:
        value = os.environ.get(name) or ""
        if name == "PGPASSWORD":
            found.add(value)
            continue
        found.update(m.group(3).strip("'\"") for m in _SECRET_SETTING.finditer(value))
        userinfo = _URL_PASSWORD.search(value)
        if userinfo:
            found.add(value[userinfo.end(1):userinfo.end() - 1])
    found |= {unquote(s) for s in found}
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


def redact_url(text: str) -> str:
    """`text` (a database URL, a libpq DSN, an error message) with every credential replaced by ***.

    Hides a URL's password (up to the last `@`, so an unescaped `@` in it hides nothing less),
    `password=`, `sslpassword=` and `PGPASSWORD=` settings (URL query or keyword form), and any
    verbatim occurrence of a password configured in PGPASSWORD, KLINE_DATABASE_URL or
    DAGSTER_PG_URL. Everything the project prints about a database goes through here.
    """
    text = _SECRET_SETTING.sub(lambda m: f"{m.group(1)}{m.group(2)}***", str(text))
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}***@", text)
    for secret in sorted(_known_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, slots=True)
class DayWrite:
    """What writing one (symbol, day) changed."""

    candles: int
    changed: int
    deleted: int
    first_changed: datetime | None = None
    """Earliest candle inserted, updated or deleted: where rollups must refresh from."""


@dataclass(frozen=True, slots=True)
class RollupDay:
    """One UTC day of a refreshed rollup: what that day partition's materialization reports."""

    day: date
    buckets: int
    partial_buckets: int
    last_bucket: datetime | None

    def metadata(self, full_count: int) -> Metadata:
        return {"buckets": self.buckets, "partial_buckets": self.partial_buckets, "full_bucket_candles": full_count,
                "last_bucket": self.last_bucket.isoformat() if self.last_bucket else "none"}


@dataclass(frozen=True, slots=True)
class RollupSummary:
    """A rollup over a window's span, per day and in total."""

    days: tuple[RollupDay, ...]

    def for_day(self, day: date) -> RollupDay:
        """The figures of `day` (no buckets: it held no candles)."""
        return next((d for d in self.days if d.day == day), RollupDay(day, 0, 0, None))


class FreshReports:
    """Inside one transaction holding the freshness lock: the outcomes last recorded, and saving new ones."""

    def __init__(self, conn: Any, day: date) -> None:
        self._conn, self.day = conn, day

    def recorded(self, symbols: Sequence[str]) -> dict[str, str]:
        """The candles_fresh outcome last recorded today for each symbol that has one."""
        rows = self._conn.exec_driver_sql(sql_text("live_states.sql"), {"symbols": list(symbols)})
        return {r.symbol: r.reported_state for r in rows if r.reported_day == self.day and r.reported_state}

    def save(self, outcomes: dict[str, str], *, at: datetime) -> None:
        self._conn.exec_driver_sql(sql_text("save_fresh_reports.sql"), {
            "symbols": list(outcomes), "states": list(outcomes.values()), "day": self.day, "at": at})


_engines: dict[str, Engine] = {}
_schema_ready: set[str] = set()
_lock = threading.Lock()


def _copy_buffer(candles: Sequence[Candle]) -> io.StringIO:
    # Text COPY: the decimal strings go to NUMERIC untouched, so nothing is rounded.
    lines = [
        f"{c.start_ms // 1000}\t{c.open}\t{c.high}\t{c.low}\t{c.close}\t{c.volume}\t{c.turnover}\n" for c in candles
    ]
    return io.StringIO("".join(lines))


class DayWriter:
    """Writes whole days on one connection, each day in its own transaction."""

    def __init__(self, dbapi_conn: Any) -> None:
        self._conn = dbapi_conn
        with self._conn.cursor() as cur:
            cur.execute(sql_text("stage_klines.sql"))
            # Set once per connection, not per day: the hand-change trigger returns at once for
            # the ingest's statements (their changes reach the rollups through Dagster).
            cur.execute(sql_text("pipeline_write_begin.sql"), {"is_local": False})
        self._conn.commit()

    def close(self) -> None:
        """Undo the connection's pipeline-write setting before it returns to the pool."""
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql_text("pipeline_write_end.sql"))
            self._conn.commit()
        except psycopg2.Error:
            self._rollback_quietly()  # a broken connection is discarded by the pool anyway

    def write_day(
        self, *, symbol: str, start: datetime, end: datetime, candles: Sequence[Candle],
        fetched_start: datetime | None = None, seen: datetime | None = None,
    ) -> DayWrite:
        """Make the stored 5m candles of `symbol` in [start, end) exactly `candles`, atomically.

        With `fetched_start` (and `seen`, the time of the fetch), [fetched_start, end) was
        fetched completely: its spans without candles are recorded as exchange outages in the
        same transaction, and outages there that no longer hold are removed.
        """
        params = {"symbol": symbol, "start": start, "end": end, "fetched_start": fetched_start, "seen": seen}
        try:
            with self._conn.cursor() as cur:
                cur.copy_expert("COPY kline_stage FROM STDIN", _copy_buffer(candles))
                cur.execute(sql_text("upsert_klines.sql"), params)
                changed, first_upserted = cur.fetchone()
                cur.execute(sql_text("delete_stale_klines.sql"), params)
                deleted, first_deleted = cur.fetchone()
                if fetched_start is not None:
                    cur.execute(sql_text("record_gaps.sql"), params)
            self._conn.commit()
        except BaseException:
            self._rollback_quietly()
            raise
        touched = [t for t in (first_upserted, first_deleted) if t is not None]
        return DayWrite(candles=len(candles), changed=changed, deleted=deleted, first_changed=min(touched, default=None))


    def _rollback_quietly(self) -> None:
        # After a dropped connection the rollback fails too; the original error is the one to
        # report (the server has rolled the transaction back by itself).
        try:
            self._conn.rollback()
        except psycopg2.Error:
            pass


class KlineStore(dg.ConfigurableResource, StoreReads):
    """PostgreSQL candle store.

    `database_url` unset: KLINE_DATABASE_URL is read at run time; if that is unset too, the
    embedded PostgreSQL (see `embedded.py`) is started or reused. Passwords never leave this
    class unredacted.
    """

    database_url: str | None = None

    def resolved_url(self) -> str:
        url = self.database_url or os.environ.get("KLINE_DATABASE_URL")
        if url:
            return normalize_database_url(url)
        from kline_pipeline.embedded import embedded_database_url

        return embedded_database_url()

    def engine(self) -> Engine:
        """The process-wide engine for this URL, with the schema applied once."""
        url = self.resolved_url()
        with _lock:
            engine = _engines.get(url)
            if engine is None:
                engine = _engines[url] = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
        if url not in _schema_ready:
            self._apply_schema(engine, url)
            _schema_ready.add(url)
        return engine

    def _apply_schema(self, engine: Engine, url: str) -> None:
        try:
            raw = engine.raw_connection()
        except (sa.exc.OperationalError, psycopg2.OperationalError) as exc:
            cause = getattr(exc, "orig", None) or exc
            reason = redact_url(str(cause).strip().splitlines()[0])  # libpq may quote the DSN
            raise ConnectionError(f"cannot reach the candle database at {redact_url(url)}: {reason}") from None
        try:
            with closing(raw.cursor()) as cur:  # what psycopg2's cursor does as a context manager
                # Concurrent CREATE IF NOT EXISTS / OR REPLACE can still collide in the catalog.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                for name in schema_files():
                    cur.execute(sql_text(name))  # no parameters: the files' % signs are literal
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()

    @contextmanager
    def day_writer(self) -> Iterator[DayWriter]:
        """A DayWriter on one pooled connection (returned to the pool afterwards)."""
        raw = self.engine().raw_connection()
        try:
            writer = DayWriter(raw.driver_connection)
            try:
                yield writer
            finally:
                writer.close()
        finally:
            raw.close()

    def record_listing(self, instrument: Instrument, *, checked_at: datetime) -> None:
        """Remember a symbol's listing time, so checks and gap reports need no request. A delisting
        also drops the recorded outages from its delivery time on (they are "delisted" now)."""
        params = {
            "symbol": instrument.symbol, "category": instrument.category,
            "launch_time": instrument.launch_time, "checked_at": checked_at,
            "status": instrument.status, "delivery_time": instrument.delivery_time,
        }
        with self.engine().begin() as conn:
            conn.exec_driver_sql(sql_text("upsert_listing.sql"), params)
            if instrument.delivery_time is not None:
                conn.exec_driver_sql(sql_text("trim_gaps_after_delisting.sql"), params)

    def record_live_ticks(self, *, at: datetime, errors: dict[str, str | None]) -> None:
        """Remember the tick at `at` of each symbol: None = refreshed, else its error."""
        self.execute("record_live_ticks.sql", {"symbols": list(errors), "errors": list(errors.values()), "at": at})

    def mark_live_pending(self, *, symbol: str, since: datetime) -> None:
        """Candles of `symbol` changed from `since` on; see sql/mark_live_pending.sql."""
        self.execute("mark_live_pending.sql", {"symbol": symbol, "since": since})

    def mark_live_recorded(self, *, symbols: Sequence[str], through: date) -> None:
        self.execute("mark_live_recorded.sql", {"symbols": list(symbols), "through": through})

    @contextmanager
    def fresh_reports(self, day: date) -> Iterator[FreshReports]:
        """One transaction under the freshness lock (sql/lock_fresh_reports.sql) for `day`'s outcomes."""
        with self.engine().begin() as conn:
            conn.exec_driver_sql(sql_text("lock_fresh_reports.sql"))
            yield FreshReports(conn, day)

    def execute(self, sql_file: str, params: dict[str, Any]) -> None:
        """Run one statement from `sql/` in its own transaction."""
        with self.engine().begin() as conn:
            conn.exec_driver_sql(sql_text(sql_file), params)

    def query(self, sql_file: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of a read-only query from `sql/`, as tuples: what the typed reads (StoreReads) are built on.

        Outside this class only `export.py` still reads through it (its per-day row counts); new
        callers add a typed method instead, so no row is read by position outside the store."""
        with self.engine().connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql_text(sql_file), params)]

    def purge_symbol(self, symbol: str) -> dict[str, int]:
        """Delete every row of `symbol` (candles, rollups, outages, listing, live state) in one transaction;
        rows deleted per table. Repeating it deletes nothing more."""
        with self.engine().begin() as conn:
            # Not a hand correction: nothing is left to refresh for a purged symbol.
            conn.exec_driver_sql(sql_text("pipeline_write_begin.sql"), {"is_local": True})
            return {table: count for table, count in conn.exec_driver_sql(sql_text("purge_symbol.sql"), {"symbol": symbol})}

    def refresh_rollup(self, *, rollup: str, symbol: str, start: datetime, end: datetime) -> RollupSummary:
        """Recompute `rollup` (a table name, e.g. price_klines_1h) for `symbol` over [start, end).

        Runs `refresh_price_klines` (one transaction), then summarises the refreshed buckets per day.
        """
        params = {"rollup": rollup, "symbol": symbol, "start": start, "end": end}
        self.execute("refresh_rollup.sql", params)
        return RollupSummary(days=tuple(RollupDay(*row) for row in self.query("rollup_summary.sql", params)))

    def record_job_run(
        self, *, started_at: datetime | float, succeeded: bool, lookbacks: Mapping[str, int] | None = None,
        rollups: Sequence[str] | None = None,
    ) -> None:
        """Record one run of the refresh job of rollups, finished now: what the TimescaleDB-style
        views `timescaledb_information.jobs` / `job_stats` report (sql/schema_005_timescaledb_compat.sql).

        A live tick passes `lookbacks` (timeframe -> minutes it recomputed back, e.g. {"15m": 30}:
        every rollup, and the lookback becomes the rollup's refresh policy); a rollup asset passes
        `rollups` (its timeframe). `started_at` is an aware datetime or POSIX seconds (Dagster's
        run record `start_time`). Writes one row per rollup in price_kline_job_stats (counters,
        so the table stays small); each call counts one more run, so call it once per run.
        """
        if (lookbacks is None) == (rollups is None):
            raise ValueError("record_job_run needs either lookbacks (a live tick) or rollups (a rollup refresh)")
        if not isinstance(started_at, datetime):
            started_at = datetime.fromtimestamp(started_at, timezone.utc)
        runs = ({t: timedelta(minutes=m) for t, m in lookbacks.items()} if lookbacks is not None
                else dict.fromkeys(rollups or [], None))
        self.execute("record_job_run.sql", {
            "timeframes": list(runs), "lookbacks": list(runs.values()), "live": lookbacks is not None,
            "started_at": started_at, "finished_at": clock.utcnow(), "succeeded": succeeded,
        })
