"""UI-style backfills (the daemon turning a partition backfill into runs, against a real code
server) of a delisted symbol across its delisting, and of spot and linear BTCUSDT side by side,
compared exactly with the exchange's candles."""

from datetime import datetime, timedelta, timezone

import dagster as dg

from kline_pipeline.backfills import backfill_status, launch_backfill
from kline_pipeline.models import to_ms
from kline_pipeline_tests.conftest import NOW
from kline_pipeline_tests.helpers import stored, truth
from kline_pipeline_tests.test_backfills import all_done, drive_daemon

UTC = timezone.utc
LISTED = datetime(2024, 12, 1, tzinfo=UTC)
DELISTED_AT = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def current_results(instance: dg.DagsterInstance, check: str, asset: str = "price_klines_5m") -> dict[str, str]:
    infos = instance.event_log_storage.get_asset_check_partition_info([dg.AssetCheckKey(dg.AssetKey(asset), check)])
    return {i.partition_key: i.latest_execution_status.value for i in infos if i.is_current}


def test_a_ui_style_backfill_of_a_delisted_symbol_across_its_delisting(simulator, daemon, dagster_env,
                                                                       bybit, kline_store):
    simulator.add_instrument("LUNAUSDT", to_ms(LISTED))
    simulator.delist("LUNAUSDT", to_ms(DELISTED_AT))
    start, end = datetime(2025, 1, 8, tzinfo=UTC), datetime(2025, 1, 13, tzinfo=UTC)
    launched = launch_backfill(dagster_env, symbol="LUNAUSDT", start=start, end=end, now=NOW, bybit=bybit)
    drive_daemon(daemon, until=all_done(dagster_env), timeout=180)
    status = backfill_status(dagster_env, launched.backfill_id)
    assert status["status"] == "COMPLETED_SUCCESS", status
    assert stored(kline_store, "LUNAUSDT", start, end, table="price_klines") == truth(simulator, "LUNAUSDT", start, end)
    assert len(truth(simulator, "LUNAUSDT", start, end)) == 2 * 288 + 144
    assert stored(kline_store, "LUNAUSDT", start, end, table="price_klines_1d") == truth(
        simulator, "LUNAUSDT", start, end, "D")
    after = dagster_env.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("price_klines_5m"), asset_partitions=["2025-01-12|LUNAUSDT"]), limit=1).records
    reason = after[0].asset_materialization.metadata["empty_reason"].value
    assert reason.startswith("delisted: after the delisting (2025-01-10T12:00:00+00:00, status Closed)")
    keys = [f"{(start + i * DAY).date().isoformat()}|LUNAUSDT" for i in range(5)]
    assert current_results(dagster_env, "no_missing_candles") == dict.fromkeys(keys, "SUCCEEDED")
    for rollup in ("price_klines_1h", "price_klines_1d"):
        assert current_results(dagster_env, "exact_and_complete", rollup) == dict.fromkeys(keys, "SUCCEEDED")


def test_ui_style_backfills_of_spot_and_linear_btcusdt_side_by_side(simulator, daemon, dagster_env,
                                                                     bybit, kline_store):
    simulator.add_instrument("spot:BTCUSDT", to_ms(datetime(2021, 1, 1, tzinfo=UTC)))
    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 3, tzinfo=UTC)
    linear = launch_backfill(dagster_env, symbol="BTCUSDT", start=start, end=end, now=NOW, bybit=bybit)
    spot = launch_backfill(dagster_env, symbol="spot:BTCUSDT", start=start, end=end, now=NOW, bybit=bybit)
    assert linear.partition_keys == ("2025-01-01|BTCUSDT", "2025-01-02|BTCUSDT")  # the default's keys, unchanged
    assert spot.partition_keys == ("2025-01-01|spot:BTCUSDT", "2025-01-02|spot:BTCUSDT")
    drive_daemon(daemon, until=all_done(dagster_env), timeout=180)
    for launched in (linear, spot):
        assert backfill_status(dagster_env, launched.backfill_id)["status"] == "COMPLETED_SUCCESS"
    for market in ("BTCUSDT", "spot:BTCUSDT"):
        assert stored(kline_store, market, start, end, table="price_klines") == truth(simulator, market, start, end)
        for table, interval in (("price_klines_1h", "60"), ("price_klines_1d", "D")):
            assert stored(kline_store, market, start, end, table=table) == truth(simulator, market, start, end, interval)
    assert truth(simulator, "spot:BTCUSDT", start, end) != truth(simulator, "BTCUSDT", start, end)
    with kline_store.engine().connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM price_klines WHERE symbol = 'BTCUSDT' "
                                    "AND timeframe = '5m'").scalar() == 2 * 288
    results = current_results(dagster_env, "no_missing_candles")
    assert results == dict.fromkeys([*linear.partition_keys, *spot.partition_keys], "SUCCEEDED")
