"""Hand corrections: the statement trigger records (symbol, day), the rollup sensor refreshes exactly those days."""

from datetime import date, timedelta

import dagster as dg
import pytest

from kline_pipeline.assets import price_klines_5m
from kline_pipeline.hand_changes import take_hand_changes
from kline_pipeline.ingest import day_start, ingest_days
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import ROLLUPS, rollup_assets
from kline_pipeline.sensors import RollupCursor, evaluate_tick, requested_partitions, rollup_refresh_sensor
from kline_pipeline_tests.conftest import NOW

RANGE = {"start": "dagster/asset_partition_range_start", "end": "dagster/asset_partition_range_end"}
DAYS = [date(2025, 1, 1) + timedelta(days=i) for i in range(4)]


def sql(store, statement: str) -> list[tuple]:
    with store.engine().begin() as conn:
        result = conn.exec_driver_sql(statement)
        return [tuple(r) for r in result] if result.returns_rows else []


def recorded(store) -> list[tuple]:
    return sql(store, "SELECT symbol, day FROM price_kline_hand_changes ORDER BY 1, 2")


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT", "ETHUSDT"])
        yield inst


def test_the_trigger_records_each_changed_day_once_per_statement_and_ignores_the_pipeline(kline_store, bybit,
                                                                                        simulator):
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=DAYS, now=NOW)
    assert recorded(kline_store) == []  # the pipeline's own writes are not hand changes
    # One UPDATE over two days and 576 rows: two pairs.
    sql(kline_store, "UPDATE price_klines SET volume = volume + 1 WHERE symbol = 'BTCUSDT' "
        "AND timestamp >= '2025-01-02 00:00+00' AND timestamp < '2025-01-04 00:00+00'")
    assert recorded(kline_store) == [("BTCUSDT", date(2025, 1, 2)), ("BTCUSDT", date(2025, 1, 3))]
    sql(kline_store, "DELETE FROM price_kline_hand_changes")
    sql(kline_store, "DELETE FROM price_klines WHERE symbol = 'BTCUSDT' AND timestamp = '2025-01-04 23:55+00'")
    sql(kline_store, "INSERT INTO price_klines VALUES ('ETHUSDT', '5m', '2025-01-01 12:00+00', 1, 2, 1, 2, 3, 4)")
    # An UPDATE that moves a candle records the day it left and the day it reached.
    sql(kline_store, "UPDATE price_klines SET timestamp = '2025-01-03 00:00+00' "
        "WHERE symbol = 'ETHUSDT' AND timestamp = '2025-01-01 12:00+00'")
    assert recorded(kline_store) == [("BTCUSDT", date(2025, 1, 4)), ("ETHUSDT", date(2025, 1, 1)),
                                     ("ETHUSDT", date(2025, 1, 3))]
    sql(kline_store, "DELETE FROM price_kline_hand_changes")
    kline_store.purge_symbol("ETHUSDT")  # removing a symbol is not a hand correction
    assert recorded(kline_store) == []
    trigger_levels = sql(kline_store, "SELECT DISTINCT action_orientation FROM information_schema.triggers "
                         "WHERE event_object_table = 'price_klines'")
    assert trigger_levels == [("STATEMENT",)]


def tick(instance, store, cursor: str | None) -> dg.SensorResult:
    """One tick of the real sensor, its context (and resources) closed at once, as the daemon does."""
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"kline_store": store}) as context:
        return rollup_refresh_sensor(context)


def _rollup_versions(store) -> dict[tuple[str, object], str]:
    """(table, bucket) -> the row version (xmin) of every stored rollup bucket of BTCUSDT."""
    versions = {}
    for rollup in ROLLUPS:
        for bucket, xmin in sql(store, f"SELECT bucket, xmin::text FROM {rollup.table} WHERE symbol = 'BTCUSDT'"):
            versions[(rollup.table, bucket)] = xmin
    return versions


def _mismatches(store) -> list[tuple]:
    found = []
    for rollup in ROLLUPS:
        found += [(rollup.table, *row) for row in sql(
            store, f"SELECT * FROM price_kline_rollup_mismatches('{rollup.table}', '2025-01-01 00:00+00', "
            "'2025-01-05 00:00+00', 'BTCUSDT')")]
    return found


def test_a_hand_update_and_delete_refresh_exactly_the_affected_buckets(instance, kline_store, bybit, simulator,
                                                                      frozen_clock):
    resources = {"bybit": bybit, "kline_store": kline_store}
    dg.materialize([price_klines_5m, *rollup_assets], instance=instance, resources=resources,
                   tags={RANGE["start"]: "2025-01-01|BTCUSDT", RANGE["end"]: "2025-01-04|BTCUSDT"})
    cursor = RollupCursor.parse(tick(instance, kline_store, None).cursor)  # the backfill: nothing stale
    before = _rollup_versions(kline_store)

    # By hand: a corrected high on 2 January 10:05 and a deleted candle on 4 January 23:55.
    sql(kline_store, "UPDATE price_klines SET high = high + 1000 WHERE symbol = 'BTCUSDT' "
        "AND timestamp = '2025-01-02 10:05+00'")
    sql(kline_store, "DELETE FROM price_klines WHERE symbol = 'BTCUSDT' AND timestamp = '2025-01-04 23:55+00'")
    assert len(_mismatches(kline_store)) == 12  # each rollup is now stale in two buckets

    result = tick(instance, kline_store, cursor.dumps())
    requests = list(result.run_requests)
    assert requested_partitions(requests) == [("2025-01-02|BTCUSDT", "2025-01-02|BTCUSDT"),
                                              ("2025-01-04|BTCUSDT", "2025-01-04|BTCUSDT")]
    assert all(set(r.asset_selection) == {a.key for a in rollup_assets} for r in requests)
    for request in requests:  # what the daemon runs for the requests
        dg.materialize(rollup_assets, instance=instance, resources=resources, tags=request.tags)

    assert _mismatches(kline_store) == []  # every rollup equals a recomputation
    after = _rollup_versions(kline_store)
    rewritten = sorted((table, bucket.isoformat()) for (table, bucket), xmin in after.items()
                       if before.get((table, bucket)) != xmin)
    expected = [(r.table, b) for r in ROLLUPS for b in (
        day_start(date(2025, 1, 2)) + timedelta(hours=10) - (timedelta(hours=10) % r.stride),
        day_start(date(2025, 1, 4)) + timedelta(days=1) - r.stride)]
    assert rewritten == sorted((table, bucket.isoformat()) for table, bucket in expected)
    assert set(before) == set(after)  # no bucket vanished or appeared (each still has candles)

    # The next tick forgets the taken pairs and asks for nothing more.
    again = tick(instance, kline_store, result.cursor)
    assert list(again.run_requests or []) == [] and recorded(kline_store) == []


def test_taken_pairs_are_never_lost(instance, kline_store):
    """A pair changed again after a tick took it, and pairs taken by a tick whose cursor Dagster never
    stored, are requested again; pairs of symbols that are not partitions are dropped."""
    sql(kline_store, "INSERT INTO price_klines VALUES ('BTCUSDT', '5m', '2025-01-01 00:00+00', 1, 2, 1, 2, 3, 4), "
        "('GONEUSDT', '5m', '2025-01-01 00:00+00', 1, 2, 1, 2, 3, 4)")
    first, cursor = evaluate_tick(instance, RollupCursor(), kline_store)
    assert requested_partitions(first) == [("2025-01-01|BTCUSDT", "2025-01-01|BTCUSDT")]
    # The daemon lost that tick (its cursor was not stored): the next tick gets the old cursor.
    lost_again, _ = evaluate_tick(instance, RollupCursor(), kline_store)
    assert requested_partitions(lost_again) == [("2025-01-01|BTCUSDT", "2025-01-01|BTCUSDT")]
    assert lost_again[0].run_key != first[0].run_key  # a new request, not deduplicated away
    second, cursor = evaluate_tick(instance, RollupCursor(), kline_store)  # this tick is stored
    assert requested_partitions(second) == [("2025-01-01|BTCUSDT", "2025-01-01|BTCUSDT")]
    # Changed again after being taken: the trigger clears the claim, so the stored tick keeps it.
    sql(kline_store, "UPDATE price_klines SET close = 3 WHERE symbol = 'BTCUSDT'")
    third, cursor = evaluate_tick(instance, cursor, kline_store)
    assert requested_partitions(third) == [("2025-01-01|BTCUSDT", "2025-01-01|BTCUSDT")]
    fourth, cursor = evaluate_tick(instance, cursor, kline_store)
    assert fourth == [] and recorded(kline_store) == []


def test_a_mass_correction_is_taken_in_pages(kline_store):
    sql(kline_store, "INSERT INTO price_klines SELECT 'BTCUSDT', '5m', t, 1, 2, 1, 2, 3, 4 FROM "
        "generate_series('2025-01-01 00:00+00'::timestamptz, '2025-01-10 23:55+00', '5 minutes') AS t")
    first = take_hand_changes(kline_store, done_claim=None, claim="a", limit=4)
    second = take_hand_changes(kline_store, done_claim="a", claim="b", limit=4)
    third = take_hand_changes(kline_store, done_claim="b", claim="c", limit=4)
    assert [d.day for _, d in first + second + third] == list(range(1, 11))
    assert take_hand_changes(kline_store, done_claim="c", claim="d") == [] and recorded(kline_store) == []


def test_an_unreachable_database_leaves_the_pairs_for_a_later_tick(instance, kline_store):
    sql(kline_store, "INSERT INTO price_klines VALUES ('BTCUSDT', '5m', '2025-01-01 00:00+00', 1, 2, 1, 2, 3, 4)")
    away = type(kline_store)(database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    requests, cursor = evaluate_tick(instance, RollupCursor(claim="earlier"), away)
    assert requests == [] and cursor.claim == "earlier"  # nothing taken, nothing forgotten
    requests, _ = evaluate_tick(instance, cursor, kline_store)
    assert requested_partitions(requests) == [("2025-01-01|BTCUSDT", "2025-01-01|BTCUSDT")]
