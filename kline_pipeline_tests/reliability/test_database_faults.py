"""Database faults: a connection killed mid-run, and a database that is down at start."""

import threading
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
import sqlalchemy as sa

from kline_pipeline.bybit import BybitClient
from kline_pipeline.ingest import ingest_days
from kline_pipeline.models import to_ms
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore
from kline_pipeline_tests.conftest import LISTINGS, NOW

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = [(JAN1 + timedelta(days=d)).date() for d in range(20)]


def counts(store) -> list[int]:
    return [store.summary(symbol="BTCUSDT", start=JAN1 + timedelta(days=d), end=JAN1 + timedelta(days=d + 1)).rows
            for d in range(len(DAYS))]


def test_a_connection_terminated_mid_run_fails_cleanly_and_a_rerun_converges(kline_store, database_url, ledger):
    sim = BybitSimulator(instruments=LISTINGS, now_ms=lambda: to_ms(NOW), fail_every=1, fail_kinds=["slow:0.3"])
    sim.start()
    bybit = BybitClient(base_url=sim.url, requests_per_second=1000.0)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=DAYS, now=NOW)
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=work)
    try:
        worker.start()
        admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while sum(counts(kline_store)) < 2 * 288 and datetime.now(UTC) < deadline:
            threading.Event().wait(0.05)
        with admin.connect() as conn:  # kill every other session of this database, as a failover would
            killed = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()").scalar()
        admin.dispose()
        worker.join(timeout=60)
        assert not worker.is_alive() and killed >= 1
        assert len(failure) == 1 and isinstance(failure[0], psycopg2.OperationalError)
        assert "terminat" in str(failure[0]) or "closed" in str(failure[0])
        after_kill = counts(kline_store)  # the pool hands out fresh connections (pre-ping)
        assert set(after_kill) <= {0, 288} and 0 < sum(after_kill) < 20 * 288
        ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=DAYS, now=NOW)
        assert counts(kline_store) == [288] * 20
        want = sim.candles("BTCUSDT", to_ms(JAN1), to_ms(JAN1 + timedelta(days=20)))
        with kline_store.engine().connect() as conn:
            got = conn.exec_driver_sql(
                "SELECT (extract(epoch FROM timestamp) * 1000)::bigint::text, open::text, high::text, low::text, "
                "close::text, volume::text, turnover::text FROM price_klines ORDER BY timestamp").all()
        lost, duplicates = len({tuple(r) for r in want} - {tuple(r) for r in got}), len(got) - len(set(got))
        assert [tuple(r) for r in got] == [tuple(r) for r in want]
    finally:
        sim.stop()
    ledger.record("database", f"pg_terminate_backend of {killed} session(s) mid-ingest (20 days)",
                  f"OperationalError raised; {sum(after_kill) // 288} whole days kept, no partial day; the re-run "
                  "reused the pool and stored every candle exactly once", rows_lost=lost, duplicates=duplicates)


def test_database_down_at_start_names_the_url_without_its_password(simulator, bybit, ledger):
    # The run's first use of the store; the asset turns this into the run failure (and its
    # RetryPolicy tries twice more, 30 s and 60 s later, for a database that comes back).
    store = KlineStore(database_url="postgresql://kline:Sup3rSecretPw@127.0.0.1:1/kline")
    with pytest.raises(ConnectionError) as info:
        ingest_days(bybit=bybit, store=store, symbol="BTCUSDT", days=DAYS[:1], now=NOW)
    message = str(info.value)
    assert message.startswith("cannot reach the candle database at postgresql+psycopg2://kline:***@127.0.0.1:1/kline")
    assert "Sup3rSecretPw" not in message
    # Nothing chained is shown, and what is chained (the driver's error) carries no password either.
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "Sup3rSecretPw" not in repr(info.value.__context__)
    ledger.record("database", "candle database down at start (URL with a password)",
                  "ConnectionError `cannot reach the candle database at …kline:***@127.0.0.1:1/kline` with no "
                  "chained exception that could carry the password")
