"""The old TimescaleDB system's SQL, verbatim, on plain PostgreSQL (sql/schema_005_timescaledb_compat.sql).

After a backfill (raw + rollups through Dagster) and a live tick, the four statements of the old
docs run word for word and answer from what the pipeline recorded. Where the timescaledb
extension is installed none of it is created: that branch is exercised with a catalog row that
makes the guard see the extension, in a throwaway database.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from kline_pipeline import clock
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.live import DEFAULT_LOOKBACK_MINUTES
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import ROLLUPS, rollup_assets
from kline_pipeline.schedules import live_refresh_job
from kline_pipeline.store import KlineStore
from kline_pipeline_tests.conftest import ADMIN_URL, NOW, throwaway_database

REFRESH = "CALL refresh_continuous_aggregate('price_klines_1d', '2025-01-01 00:00:00+00', '2025-02-01 00:00:00+00');"
JOBS = "SELECT * FROM timescaledb_information.jobs WHERE proc_name = 'policy_refresh_continuous_aggregate';"
JOB_STATS = "SELECT * FROM timescaledb_information.job_stats ORDER BY last_run_started_at DESC LIMIT 5;"
AGGREGATES = "SELECT * FROM timescaledb_information.continuous_aggregates;"
TABLES = [r.table for r in ROLLUPS]


def rows(store: KlineStore, sql: str, params: dict | None = None) -> list[dict]:
    """Run one statement in its own transaction; its rows as dicts (none for CALL, DELETE, ...)."""
    with store.engine().begin() as conn:
        result = conn.exec_driver_sql(sql, params or {})
        return [dict(r._mapping) for r in result] if result.returns_rows else []


def day_buckets(store: KlineStore) -> list[tuple]:
    return [tuple(r.values()) for r in rows(
        store, "SELECT symbol, bucket, open, high, low, close, volume, turnover, candle_count "
               "FROM price_klines_1d WHERE bucket < '2025-02-01' ORDER BY symbol, bucket")]


@pytest.fixture
def fresh_store() -> Iterator[KlineStore]:
    """A store on its own new database (for tests that change the rollup registry)."""
    with throwaway_database(ADMIN_URL, "kline_compat") as url:
        yield KlineStore(database_url=url)


def test_the_seed_sql_runs_verbatim_after_a_backfill_and_a_live_tick(kline_store, bybit, monkeypatch):
    resources = {"bybit": bybit, "kline_store": kline_store}
    with dg.instance_for_test() as instance:
        # A two-day backfill run of ETHUSDT's raw asset and its six rollups (on the wall clock, as a run worker).
        instance.add_dynamic_partitions(symbols_partitions.name, ["ETHUSDT"])
        assert dg.materialize([price_klines_5m, *rollup_assets], instance=instance, resources=resources, tags={
            "dagster/asset_partition_range_start": "2025-01-30|ETHUSDT",
            "dagster/asset_partition_range_end": "2025-01-31|ETHUSDT"}).success
        # Then one live tick of BTCUSDT at the simulator's "now" (ETHUSDT would catch up a month).
        instance.delete_dynamic_partition(symbols_partitions.name, "ETHUSDT")
        instance.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT"])
        monkeypatch.setattr(clock, "utcnow", lambda: NOW)
        job = dg.Definitions(jobs=[live_refresh_job], resources=resources).resolve_job_def(live_refresh_job.name)
        assert job.execute_in_process(instance=instance).success

    exact = day_buckets(kline_store)
    assert [(r[1].date().isoformat(), r[8]) for r in exact] == [("2025-01-30", 288), ("2025-01-31", 288)]
    rows(kline_store, "DELETE FROM price_klines_1d WHERE bucket = '2025-01-30'")
    rows(kline_store, "UPDATE price_klines_1d SET high = 0 WHERE bucket = '2025-01-31'")
    rows(kline_store, REFRESH)
    assert day_buckets(kline_store) == exact  # recomputed like refresh_price_klines

    jobs = rows(kline_store, JOBS)
    assert [j["hypertable_name"] for j in jobs] == TABLES
    assert [j["job_id"] for j in jobs] == [1000, 1001, 1002, 1003, 1004, 1005]
    assert [j["config"]["start_offset"] for j in jobs] == ["00:30:00", "01:00:00", "02:00:00", "08:00:00", "1 day", "2 days"]
    assert {j["schedule_interval"] for j in jobs} == {timedelta(minutes=5)}
    assert {j["application_name"] for j in jobs} == {f"Refresh Continuous Aggregate Policy [{n}]" for n in range(1000, 1006)}
    # The tick ran at the frozen 2025 "now", long before the database's clock: not scheduled any more.
    assert {(j["scheduled"], j["next_start"]) for j in jobs} == {(False, None)}

    stats = rows(kline_store, JOB_STATS)
    assert len(stats) == 5
    assert {s["last_run_started_at"] for s in stats} == {NOW}  # the live tick, the latest run of every rollup
    # Two runs each: the backfill's rollup asset and the live tick.
    assert {(s["total_runs"], s["total_successes"], s["total_failures"], s["last_run_status"], s["job_status"])
            for s in stats} == {(2, 2, 0, "Success", "Paused")}
    assert {s["last_successful_finish"] for s in stats} == {NOW}

    aggregates = rows(kline_store, AGGREGATES)
    assert [a["view_name"] for a in aggregates] == TABLES
    assert {(a["hypertable_name"], a["materialized_only"], a["finalized"]) for a in aggregates} == {
        ("price_klines", True, True)}
    # Each definition is the truth: run as a query it gives exactly the stored rollup.
    for aggregate in aggregates:
        table = aggregate["materialization_hypertable_name"]
        derived = rows(kline_store, f"SELECT * FROM ({aggregate['view_definition']}) AS q ORDER BY symbol, bucket")
        stored = rows(kline_store, f"SELECT * FROM {table} ORDER BY symbol, bucket")  # name from the registry
        assert derived == stored and len(stored) > 0, table


def test_a_failed_live_tick_on_the_wall_clock_shows_as_failed_and_scheduled(fresh_store):
    now = datetime.now(timezone.utc)
    fresh_store.record_job_run(lookbacks={**DEFAULT_LOOKBACK_MINUTES, "15m": 45}, started_at=now, succeeded=True)
    fresh_store.record_job_run(lookbacks=DEFAULT_LOOKBACK_MINUTES, started_at=now + timedelta(seconds=1), succeeded=False)
    stats = {s["hypertable_name"]: s for s in rows(fresh_store, JOB_STATS.replace(" LIMIT 5", ""))}
    assert set(stats) == set(TABLES)
    first = stats["price_klines_15m"]
    assert (first["total_runs"], first["total_successes"], first["total_failures"]) == (2, 1, 1)
    assert (first["last_run_status"], first["job_status"]) == ("Failed", "Scheduled")
    assert first["last_successful_finish"] < first["last_run_started_at"]  # from the first run
    assert first["next_start"] > now and first["next_start"].minute % 5 == 0 and first["next_start"].second == 0
    # The policy is the lookback the last tick used (the first tick's 45 minutes were replaced).
    assert rows(fresh_store, JOBS)[0]["config"]["start_offset"] == "00:30:00"


def test_a_rollup_refresh_counts_for_its_own_job_only(fresh_store):
    fresh_store.record_job_run(rollups=["4h"], started_at=datetime.now(timezone.utc).timestamp(), succeeded=True)
    stats = rows(fresh_store, JOB_STATS)
    assert [(s["hypertable_name"], s["total_runs"], s["job_status"]) for s in stats] == [("price_klines_4h", 1, "Paused")]
    with pytest.raises(ValueError, match="either lookbacks"):
        fresh_store.record_job_run(started_at=datetime.now(timezone.utc), succeeded=True)
    with pytest.raises(sa.exc.IntegrityError, match="price_klines_2h"):
        fresh_store.record_job_run(rollups=["2h"], started_at=datetime.now(timezone.utc), succeeded=True)


def test_the_seeded_refresh_policies_are_the_live_refresh_defaults(fresh_store):
    policies = rows(fresh_store, "SELECT name, justify_hours(refresh_lookback) AS lookback FROM price_kline_refresh_jobs "
                                 "ORDER BY job_id")
    assert [(p["name"], p["lookback"]) for p in policies] == [
        (f"price_klines_{tf}", timedelta(minutes=m)) for tf, m in DEFAULT_LOOKBACK_MINUTES.items()]


def test_refreshing_something_that_is_not_a_rollup_names_what_is_allowed(kline_store):
    with pytest.raises(sa.exc.DBAPIError, match="unknown rollup 'price_klines': allowed are price_klines_15m, "):
        rows(kline_store, REFRESH.replace("price_klines_1d", "price_klines"))
    with pytest.raises(sa.exc.DBAPIError, match='relation "price_klines_2d" does not exist'):
        rows(kline_store, REFRESH.replace("price_klines_1d", "price_klines_2d"))
    with pytest.raises(sa.exc.DBAPIError, match="unknown job 999: the refresh jobs are 1000"):
        rows(kline_store, "CALL policy_refresh_continuous_aggregate(999, NULL)")


def test_open_bounds_and_the_policy_procedure_refresh_what_is_stored(kline_store, bybit, frozen_clock):
    from kline_pipeline.live import refresh_symbol

    refresh_symbol(bybit=bybit, store=kline_store, symbol="ETHUSDT", now=NOW, lookbacks=DEFAULT_LOOKBACK_MINUTES,
                   refetch=timedelta(days=2))
    exact = rows(kline_store, "SELECT * FROM price_klines_1h ORDER BY bucket")
    rows(kline_store, "DELETE FROM price_klines_1h")
    rows(kline_store, "CALL refresh_continuous_aggregate('price_klines_1h', NULL, NULL)")
    assert rows(kline_store, "SELECT * FROM price_klines_1h ORDER BY bucket") == exact and len(exact) == 48


def test_the_policy_procedure_refreshes_its_lookback_back_from_the_databases_now(kline_store):
    """Job 1002 (price_klines_1h) recomputes the hours within its lookback back from now(), and only
    those: candles of the last 8 hours are stored with no rollup, then the policy is called."""
    with kline_store.engine().begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO price_klines (symbol, timeframe, timestamp, open, high, low, close, volume, turnover) "
            "SELECT 'POLUSDT', '5m', t, 1, 2, 0.5, 1.5, 10, 15 FROM generate_series("
            "date_bin('5 minutes', now() - interval '8 hours', 'epoch'), now() - interval '5 minutes', "
            "interval '5 minutes') AS t")
    with kline_store.engine().begin() as conn:  # one transaction: now() is the CALL's now()
        conn.exec_driver_sql("CALL policy_refresh_continuous_aggregate(1002)")
        now = conn.exec_driver_sql("SELECT now()").scalar()
        newest = conn.exec_driver_sql("SELECT max(timestamp) FROM price_klines WHERE symbol = 'POLUSDT'").scalar()
        buckets = [r[0] for r in conn.exec_driver_sql(
            "SELECT bucket FROM price_klines_1h WHERE symbol = 'POLUSDT' ORDER BY bucket")]
    lookback = timedelta(minutes=DEFAULT_LOOKBACK_MINUTES["1h"])
    first = (now - lookback).replace(minute=0, second=0, microsecond=0)
    last = newest.replace(minute=0, second=0, microsecond=0)  # the hour of the newest stored candle
    expected = [first + timedelta(hours=h) for h in range(int((last - first) / timedelta(hours=1)) + 1)]
    assert buckets == expected and len(expected) >= 2  # older hours hold candles too, but are not refreshed


def test_where_timescaledb_is_installed_none_of_it_is_created(fresh_store):
    # Make the guard see the extension: a catalog row, in this throwaway database only (superuser).
    with sa.create_engine(fresh_store.database_url).begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO pg_extension (oid, extname, extowner, extnamespace, extrelocatable, extversion) "
            "VALUES (pg_nextoid('pg_extension', 'oid', 'pg_extension_oid_index'), 'timescaledb', "
            "(SELECT oid FROM pg_roles WHERE rolname = current_user), 'public'::regnamespace, false, '2.17.0')")
    fresh_store.engine()  # applies the schema
    assert rows(fresh_store, "SELECT nspname FROM pg_namespace WHERE nspname = 'timescaledb_information'") == []
    assert rows(fresh_store, "SELECT proname FROM pg_proc WHERE proname IN "
                             "('refresh_continuous_aggregate', 'policy_refresh_continuous_aggregate')") == []
    # The pipeline's own tables still work there: runs are recorded all the same.
    fresh_store.record_job_run(rollups=["1d"], started_at=datetime.now(timezone.utc), succeeded=True)
    assert rows(fresh_store, "SELECT rollup, total_runs FROM price_kline_job_stats") == [
        {"rollup": "price_klines_1d", "total_runs": 1}]
