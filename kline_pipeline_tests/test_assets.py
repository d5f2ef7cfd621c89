"""`price_klines_5m` through Dagster: single partitions, ranges, idempotency, listing dates."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from kline_pipeline.assets import PARTITIONS_PER_RUN, price_klines_5m
from kline_pipeline.definitions import defs
from kline_pipeline.models import to_ms
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.event_writes import add_partition_metadata

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT", "ETHUSDT", "NEWUSDT", "btcusdt"])
        yield inst


def run(instance, bybit, kline_store, *, key: str | None = None, first: str | None = None, last: str | None = None,
        raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    tags = {}
    if first:
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    return dg.materialize(
        [price_klines_5m], instance=instance, partition_key=key, tags=tags, raise_on_error=raise_on_error,
        resources={"bybit": bybit, "kline_store": kline_store},
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Each partition's materialization metadata, by partition key (one materialization each)."""
    mats = result.asset_materializations_for_node("price_klines_5m")
    assert len({m.partition for m in mats}) == len(mats) >= 1
    return {m.partition: {k: v.value for k, v in m.metadata.items()} for m in mats}


def summary(kline_store, symbol: str, start: datetime, days: int):
    return kline_store.summary(symbol=symbol, start=start, end=start + timedelta(days=days))


def test_definitions_load_with_the_raw_asset_and_both_resources():
    repo = defs.get_repository_def()
    assert dg.AssetKey("price_klines_5m") in repo.asset_graph.get_all_asset_keys()
    assert {"bybit", "kline_store"} <= set(repo.get_top_level_resources())
    assert price_klines_5m.partitions_def.partition_dimension_names == ["date", "symbol"]
    assert price_klines_5m.backfill_policy.max_partitions_per_run == PARTITIONS_PER_RUN
    assert price_klines_5m.op.pool == "bybit_api"


def test_one_partition(instance, bybit, kline_store, simulator, frozen_clock):
    result = run(instance, bybit, kline_store, key="2025-01-01|BTCUSDT")
    meta = metadata(result)["2025-01-01|BTCUSDT"]
    assert meta["rows"] == 288 and meta["requests"] == 1.0  # the day's share of the kline windows: all of one
    assert meta["run_requests"] == 2  # instruments-info + one kline window
    assert meta["first_candle"] == "2025-01-01T00:00:00+00:00"
    assert meta["last_candle"] == "2025-01-01T23:55:00+00:00"
    assert summary(kline_store, "BTCUSDT", JAN1, 1).rows == 288
    assert summary(kline_store, "BTCUSDT", JAN1 - timedelta(days=1), 1).rows == 0


def test_january_2025_is_8928_exact_candles_in_one_run(instance, bybit, kline_store, simulator, frozen_clock):
    result = run(instance, bybit, kline_store, first="2025-01-01|BTCUSDT", last="2025-01-31|BTCUSDT")
    meta = metadata(result)
    # Each day shows its own figures; the run's totals are beside them, named run_*.
    assert sorted(meta) == [f"2025-01-{d:02d}|BTCUSDT" for d in range(1, 32)]
    assert {m["rows"] for m in meta.values()} == {288}
    assert meta["2025-01-07|BTCUSDT"]["first_candle"] == "2025-01-07T00:00:00+00:00"
    assert meta["2025-01-07|BTCUSDT"]["last_candle"] == "2025-01-07T23:55:00+00:00"
    first = meta["2025-01-01|BTCUSDT"]
    assert first["run_partitions"] == 31 and first["run_rows"] == 8928
    assert first["run_requests"] == 1 + 9  # 8928 candles in windows of 1000
    # The request shares of the days add up to the 9 kline windows (each rounded to 0.001).
    assert first["requests"] == round(288 / 1000, 3)
    assert abs(sum(m["requests"] for m in meta.values()) - 9) < 0.02
    got = summary(kline_store, "BTCUSDT", JAN1, 31)
    assert got.rows == 8928
    # Every stored value is the exchange's: compare with the simulator's own candles.
    with kline_store.engine().connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT (extract(epoch FROM timestamp) * 1000)::bigint, open::text, high::text, low::text, close::text,"
            " volume::text, turnover::text FROM price_klines WHERE symbol = 'BTCUSDT' ORDER BY timestamp").all()
    want = simulator.candles("BTCUSDT", to_ms(JAN1), to_ms(JAN1 + timedelta(days=31)))
    assert [[str(r[0]), *r[1:]] for r in rows] == [list(w) for w in want]


def test_a_40_day_range_and_rerun_idempotency(instance, bybit, kline_store, simulator, frozen_clock):
    run(instance, bybit, kline_store, first="2025-01-01|BTCUSDT", last="2025-02-09|BTCUSDT")
    before = summary(kline_store, "BTCUSDT", JAN1, 40)
    assert before.rows == 40 * 288
    again = metadata(run(instance, bybit, kline_store, first="2025-01-01|BTCUSDT", last="2025-02-09|BTCUSDT"))
    after = summary(kline_store, "BTCUSDT", JAN1, 40)
    assert after == before
    assert len(again) == 40
    assert {(m["rows"], m["rows_changed"], m["rows_deleted"], m["run_rows"]) for m in again.values()} == {
        (288, 0, 0, 40 * 288)}


def test_a_second_symbol_is_stored_beside_the_first(instance, bybit, kline_store, simulator, frozen_clock):
    run(instance, bybit, kline_store, key="2025-01-02|BTCUSDT")
    run(instance, bybit, kline_store, key="2025-01-02|ETHUSDT")
    day = JAN1 + timedelta(days=1)
    btc, eth = summary(kline_store, "BTCUSDT", day, 1), summary(kline_store, "ETHUSDT", day, 1)
    assert btc.rows == eth.rows == 288 and btc.checksum != eth.checksum


def test_days_before_listing_are_empty_without_requests(instance, bybit, kline_store, simulator, frozen_clock):
    meta = metadata(run(instance, bybit, kline_store, first="2025-01-10|NEWUSDT", last="2025-01-16|NEWUSDT"))
    for day in range(10, 15):  # Jan 15 is the listing day
        assert meta[f"2025-01-{day}|NEWUSDT"]["rows"] == 0
        assert meta[f"2025-01-{day}|NEWUSDT"]["requests"] == 0
        assert meta[f"2025-01-{day}|NEWUSDT"]["empty_reason"] == "before the listing (2025-01-15T08:00:00+00:00)"
    listing_day = meta["2025-01-15|NEWUSDT"]
    assert listing_day["rows"] == 16 * 12 and listing_day["first_candle"] == "2025-01-15T08:00:00+00:00"
    assert "empty_reason" not in listing_day and meta["2025-01-16|NEWUSDT"]["rows"] == 288
    kline = simulator.kline_requests()
    assert len(kline) == 1 and int(kline[0].params["start"]) == to_ms(datetime(2025, 1, 15, 8, 0, tzinfo=UTC))
    assert listing_day["run_requests"] == 2 and listing_day["run_rows"] == 16 * 12 + 288


def test_today_stores_only_closed_candles(instance, bybit, kline_store, simulator, frozen_clock):
    meta = metadata(run(instance, bybit, kline_store, key="2025-03-01|BTCUSDT"))["2025-03-01|BTCUSDT"]  # NOW 12:02:30
    assert meta["rows"] == 144 and meta["last_candle"] == "2025-03-01T11:55:00+00:00"


def test_a_malformed_symbol_fails_naming_it_and_writes_nothing(instance, bybit, kline_store, simulator, frozen_clock):
    result = run(instance, bybit, kline_store, key="2025-01-01|btcusdt", raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "invalid symbol 'btcusdt'" in failure and "A-Z" in failure
    assert simulator.requests == []
    assert summary(kline_store, "btcusdt", JAN1, 1).rows == 0


def test_a_refused_window_fails_the_run_without_a_half_written_day(instance, bybit, kline_store, simulator, frozen_clock):
    # instruments-info and the first window (Jan 1 00:00 .. Jan 4 11:15) succeed; the second is refused.
    simulator.inject("ok", "ok", "10001")
    result = run(instance, bybit, kline_store, first="2025-01-01|BTCUSDT", last="2025-01-06|BTCUSDT",
                 raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "retCode 10001" in failure and "kline BTCUSDT 2025-01-04T11:20:00+00:00" in failure
    assert len(simulator.kline_requests()) == 2  # refused parameters are not retried, not even by Dagster
    # The three days the first window covered are whole; Jan 4 was only partly fetched: nothing of it.
    assert [summary(kline_store, "BTCUSDT", JAN1 + timedelta(days=d), 1).rows for d in range(6)] == [288] * 3 + [0] * 3


def test_metadata_for_a_partition_outside_the_run_is_refused(instance):
    @dg.asset(partitions_def=price_klines_5m.partitions_def)
    def outside(context: dg.AssetExecutionContext) -> None:
        add_partition_metadata(context, {key: {"rows": 1} for key in context.partition_keys})  # accepted
        add_partition_metadata(context, {"2025-01-05|BTCUSDT": {"rows": 2}})

    tags = {"dagster/asset_partition_range_start": "2025-01-01|BTCUSDT",
            "dagster/asset_partition_range_end": "2025-01-02|BTCUSDT"}
    with pytest.raises(dg.DagsterInvariantViolationError, match=r"does not materialize: 2025-01-05\|BTCUSDT"):
        dg.materialize([outside], instance=instance, tags=tags)
