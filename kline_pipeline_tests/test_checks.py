"""Asset checks per partition: raw completeness, validity, freshness and the rollups, each result current."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from kline_pipeline.assets import price_klines_5m
from kline_pipeline.checks import EVALUATORS, Facts, raw_checks, rollup_checks
from kline_pipeline.models import to_ms
from kline_pipeline.partitions import kline_partitions, symbols_partitions
from kline_pipeline.rollups import rollup_assets

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)
RAW = dg.AssetKey("price_klines_5m")
EVERYTHING = [price_klines_5m, *rollup_assets, raw_checks, rollup_checks]


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT", "NEWUSDT"])
        yield inst


@pytest.fixture
def store(kline_store):
    return kline_store  # emptied by the conftest fixture


def run(instance, bybit, store, *, key=None, first=None, last=None, selection=None):
    """Materialise everything (or only `selection`, e.g. just the checks, like the UI's "Execute checks")."""
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if first else {}
    job = dg.define_asset_job("under_test", selection=selection or dg.AssetSelection.all(include_sources=False),
                              partitions_def=kline_partitions)
    defs = dg.Definitions(assets=EVERYTHING[:-2], asset_checks=EVERYTHING[-2:], jobs=[job],
                          resources={"bybit": bybit, "kline_store": store})
    if key and selection is not None:
        # A checks-only job has no asset to carry the partitions definition: tag the run as the UI does.
        day, symbol = key.split("|")
        tags, key = {"dagster/partition": key, "dagster/partition/date": day, "dagster/partition/symbol": symbol}, None
    return defs.resolve_job_def("under_test").execute_in_process(instance=instance, partition_key=key, tags=tags)


def results(result) -> dict[tuple[str, str, str | None], dg.AssetCheckEvaluation]:
    """(asset, check, partition) -> evaluation, for the evaluations recorded per partition."""
    return {(e.asset_key.path[-1], e.check_name, e.partition): e for e in result.get_asset_check_evaluations()}


def outcome(evaluation) -> str:
    return "passed" if evaluation.passed else f"failed {evaluation.severity.value}"


def test_a_complete_day_passes_every_check(instance, bybit, store, simulator, frozen_clock):
    run(instance, bybit, store, key="2025-01-01|BTCUSDT")
    got = results(run(instance, bybit, store, key="2025-01-02|BTCUSDT"))
    assert len(got) == 3 + 6
    assert {k: outcome(e) for k, e in got.items() if not e.passed} == {}
    meta = got[("price_klines_5m", "no_missing_candles", "2025-01-02|BTCUSDT")].metadata
    assert meta["expected"].value == 288 and meta["present"].value == 288 and meta["missing"].value == 0


def test_an_exchange_outage_warns_and_explains_short_buckets(instance, bybit, store, simulator, frozen_clock):
    day = JAN1 + timedelta(days=2)
    simulator.add_outage("BTCUSDT", to_ms(day + timedelta(hours=6)), to_ms(day + timedelta(hours=6, minutes=10)))
    run(instance, bybit, store, key="2025-01-02|BTCUSDT")
    got = results(run(instance, bybit, store, key="2025-01-03|BTCUSDT"))
    missing = got[("price_klines_5m", "no_missing_candles", "2025-01-03|BTCUSDT")]
    assert outcome(missing) == "failed WARN"
    assert missing.metadata["exchange_outage"].value == 2 and missing.metadata["missing"].value == 0
    assert "| 2025-01-03 06:00 | 2025-01-03 06:10 | 2 | exchange_outage |" in missing.metadata["gaps"].value
    complete = got[("price_klines_15m", "exact_and_complete", "2025-01-03|BTCUSDT")]
    assert complete.passed and complete.metadata["partial_buckets"].value == 1
    assert complete.metadata["unexplained_partial_buckets"].value == 0


def test_rows_deleted_by_hand_fail_with_error_when_the_checks_run_again(instance, bybit, store, simulator, frozen_clock):
    run(instance, bybit, store, first="2025-01-01|BTCUSDT", last="2025-01-02|BTCUSDT")
    with store.engine().begin() as conn:
        conn.exec_driver_sql("DELETE FROM price_klines WHERE symbol = 'BTCUSDT' AND timestamp >= '2025-01-02 10:00+00' "
                             "AND timestamp < '2025-01-02 10:30+00'")
        conn.exec_driver_sql("DELETE FROM price_klines WHERE symbol = 'BTCUSDT' AND timestamp = '2025-01-01 23:55+00'")
    checks_only = dg.AssetSelection.checks_for_assets(price_klines_5m, *rollup_assets)
    got = results(run(instance, bybit, store, key="2025-01-02|BTCUSDT", selection=checks_only))
    key = "2025-01-02|BTCUSDT"
    missing = got[("price_klines_5m", "no_missing_candles", key)]
    assert outcome(missing) == "failed ERROR" and missing.metadata["missing"].value == 6
    # The deleted 23:55 candle is the previous day's: its own no_missing_candles reports it.
    previous = results(run(instance, bybit, store, key="2025-01-01|BTCUSDT", selection=checks_only))
    assert previous[("price_klines_5m", "no_missing_candles", "2025-01-01|BTCUSDT")].metadata["missing"].value == 1
    # The rollups were not refreshed after the deletion: a stale bucket, and a short one nothing explains.
    exact = got[("price_klines_1h", "exact_and_complete", key)]
    assert outcome(exact) == "failed ERROR" and exact.metadata["mismatched_buckets"].value == 1
    assert exact.metadata["unexplained_partial_buckets"].value == 1
    # Refreshed, the buckets are exact again, but the hole still makes the 10:00 hour short: ERROR.
    run(instance, bybit, store, key=key, selection=dg.AssetSelection.assets(*rollup_assets))
    again = results(run(instance, bybit, store, key=key, selection=checks_only))[("price_klines_1h", "exact_and_complete", key)]
    assert outcome(again) == "failed ERROR" and again.metadata["mismatched_buckets"].value == 0
    assert again.metadata["first_unexplained"].value == "2025-01-02 10:00"


def test_pre_listing_and_todays_partial_day_pass(instance, bybit, store, simulator, frozen_clock):
    got = results(run(instance, bybit, store, key="2025-01-10|NEWUSDT"))
    assert outcome(got[("price_klines_5m", "no_missing_candles", "2025-01-10|NEWUSDT")]) == "passed"
    run(instance, bybit, store, key="2025-02-28|BTCUSDT")
    today = results(run(instance, bybit, store, key="2025-03-01|BTCUSDT"))  # NOW is 12:02:30
    check = today[("price_klines_5m", "no_missing_candles", "2025-03-01|BTCUSDT")]
    assert check.passed and check.metadata["expected"].value == 144
    assert {k: outcome(e) for k, e in today.items() if not e.passed} == {}


def test_a_bad_ohlc_row_fails_valid_ohlcv_naming_the_rule(instance, bybit, store, simulator, frozen_clock):
    run(instance, bybit, store, key="2025-01-01|BTCUSDT")
    with store.engine().begin() as conn:
        conn.exec_driver_sql("UPDATE price_klines SET high = low - 1 WHERE symbol = 'BTCUSDT' "
                             "AND timestamp = '2025-01-01 12:00+00'")
    got = results(run(instance, bybit, store, key="2025-01-01|BTCUSDT",
                      selection=dg.AssetSelection.checks_for_assets(price_klines_5m)))
    valid = got[("price_klines_5m", "valid_ohlcv", "2025-01-01|BTCUSDT")]
    assert outcome(valid) == "failed ERROR" and valid.metadata["violations"].value == 1
    assert valid.metadata["rule: high below low"].value == "1 candles, first at 2025-01-01T12:00:00+00:00"


def test_a_range_run_records_one_result_per_partition(instance, bybit, store, simulator, frozen_clock):
    simulator.add_outage("BTCUSDT", to_ms(JAN1 + timedelta(days=1, hours=1)), to_ms(JAN1 + timedelta(days=1, hours=2)))
    run(instance, bybit, store, first="2025-01-01|BTCUSDT", last="2025-01-04|BTCUSDT")
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(RAW, "no_missing_candles"), limit=50)
    by_partition = {r.partition: r for r in history}
    assert {p for p in by_partition if p} == {f"2025-01-0{d}|BTCUSDT" for d in range(1, 5)}
    evaluations = {p: r.event.dagster_event.event_specific_data for p, r in by_partition.items() if p}
    assert [evaluations[f"2025-01-0{d}|BTCUSDT"].passed for d in range(1, 5)] == [True, False, True, True]
    assert evaluations["2025-01-02|BTCUSDT"].severity == dg.AssetCheckSeverity.WARN


def test_one_shared_read_for_many_days_gives_each_day_its_own_outcome(instance, bybit, store, simulator,
                                                                      frozen_clock):
    """A check step reads each kind of fact once for all its days (Facts); every day's outcome must
    equal the outcome of reading that day alone: holes across midnight, an outage, a bad row, a
    stale rollup bucket, the listing day, and today's open end."""
    simulator.add_outage("BTCUSDT", to_ms(datetime(2025, 2, 24, 6, tzinfo=UTC)), to_ms(datetime(2025, 2, 24, 7, tzinfo=UTC)))
    run(instance, bybit, store, first="2025-02-22|BTCUSDT", last="2025-03-01|BTCUSDT")
    run(instance, bybit, store, first="2025-01-08|NEWUSDT", last="2025-01-12|NEWUSDT")
    with store.engine().begin() as conn:
        conn.exec_driver_sql("DELETE FROM price_klines WHERE symbol = 'BTCUSDT' AND timestamp >= '2025-02-25 23:40+00' "
                             "AND timestamp < '2025-02-26 00:20+00'")  # a hole across midnight
        conn.exec_driver_sql("UPDATE price_klines SET high = low - 1 WHERE symbol = 'BTCUSDT' "
                             "AND timestamp = '2025-02-27 08:00+00'")
        conn.exec_driver_sql("UPDATE price_klines_4h SET close = close + 1 WHERE symbol = 'BTCUSDT' "
                             "AND bucket = '2025-02-23 04:00+00'")
    keys = [f"2025-02-{d}|BTCUSDT" for d in range(22, 29)] + ["2025-03-01|BTCUSDT"] + [
        f"2025-01-{d:02d}|NEWUSDT" for d in range(8, 13)]  # not contiguous for BTCUSDT: 02-28 is left out
    shared = Facts(store, keys, frozen_clock)
    for check_key, evaluate in EVALUATORS.items():
        for key in keys:
            alone = evaluate(Facts(store, [key], frozen_clock), key)
            assert evaluate(shared, key) == alone, (check_key, key)
    # The cases above really are there (otherwise equality would prove little).
    outcomes = {(k.name, key): EVALUATORS[k](shared, key) for k in EVALUATORS for key in keys
                if k.asset_key.path[-1] in ("price_klines_5m", "price_klines_4h")}
    assert outcomes[("no_missing_candles", "2025-02-25|BTCUSDT")].metadata["missing"] == 4
    assert outcomes[("no_missing_candles", "2025-02-26|BTCUSDT")].metadata["missing"] == 4
    assert outcomes[("no_missing_candles", "2025-02-24|BTCUSDT")].severity == dg.AssetCheckSeverity.WARN
    assert outcomes[("valid_ohlcv", "2025-02-27|BTCUSDT")].metadata["violations"] == 1
    assert not outcomes[("exact_and_complete", "2025-02-23|BTCUSDT")].passed
    assert outcomes[("no_missing_candles", "2025-03-01|BTCUSDT")].metadata["expected"] == 144
    assert {o.passed for (name, key), o in outcomes.items() if key.endswith("NEWUSDT")} == {True}


def test_freshness_is_judged_on_the_latest_day_and_earlier_days_pass(instance, bybit, store, simulator, frozen_clock):
    result = run(instance, bybit, store, first="2025-02-27|BTCUSDT", last="2025-03-01|BTCUSDT")
    fresh = {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == "candles_fresh"}
    assert set(fresh) == {"2025-02-27|BTCUSDT", "2025-02-28|BTCUSDT", "2025-03-01|BTCUSDT"}  # no run summary
    assert fresh["2025-03-01|BTCUSDT"].passed and fresh["2025-03-01|BTCUSDT"].metadata["age_minutes"].value == 2.5
    assert fresh["2025-02-27|BTCUSDT"].passed
    assert fresh["2025-02-27|BTCUSDT"].metadata["applies_to"].value == "the latest day only"


def current_results(instance, check: str, asset: str = "price_klines_5m") -> dict[str, str]:
    """What the check's Partitions tab counts: partition -> SUCCEEDED/FAILED, only where the latest
    result judged the partition's latest materialization (Dagster's `is_current`)."""
    infos = instance.event_log_storage.get_asset_check_partition_info([dg.AssetCheckKey(dg.AssetKey(asset), check)])
    return {i.partition_key: i.latest_execution_status.value for i in infos if i.is_current}


def test_every_partition_of_a_range_run_has_its_own_current_result(instance, bybit, store, simulator, frozen_clock):
    """Range runs (every backfill run) and one-day runs alike: each day's result is current, so the
    UI counts it; a backfill whose previous day was never requested raises no false alarm."""
    simulator.add_outage("BTCUSDT", to_ms(JAN1 + timedelta(days=2, hours=3)), to_ms(JAN1 + timedelta(days=2, hours=4)))
    run(instance, bybit, store, first="2025-01-02|BTCUSDT", last="2025-01-04|BTCUSDT")  # Jan 1 never requested
    run(instance, bybit, store, first="2025-01-06|BTCUSDT", last="2025-01-06|BTCUSDT")  # a one-day backfill run
    days = ["2025-01-02|BTCUSDT", "2025-01-03|BTCUSDT", "2025-01-04|BTCUSDT", "2025-01-06|BTCUSDT"]
    assert current_results(instance, "no_missing_candles") == {
        "2025-01-02|BTCUSDT": "SUCCEEDED", "2025-01-03|BTCUSDT": "FAILED", "2025-01-04|BTCUSDT": "SUCCEEDED",
        "2025-01-06|BTCUSDT": "SUCCEEDED"}
    for check in ("valid_ohlcv", "candles_fresh"):
        assert current_results(instance, check) == dict.fromkeys(days, "SUCCEEDED")
    for table in ("price_klines_15m", "price_klines_1d"):
        assert current_results(instance, "exact_and_complete", table) == dict.fromkeys(days, "SUCCEEDED")


def test_rematerializing_a_day_makes_its_old_results_stale(instance, bybit, store, simulator, frozen_clock):
    run(instance, bybit, store, first="2025-01-02|BTCUSDT", last="2025-01-03|BTCUSDT")
    # The raw asset alone, again, for one day, without its checks: Jan 3's earlier raw check results
    # target a materialization that is no longer the latest, so Jan 3 has no current result (the
    # Partitions tab shows it unevaluated, as Dagster intends). The rollups were not re-materialized:
    # their results stay current.
    dg.materialize([price_klines_5m], instance=instance, partition_key="2025-01-03|BTCUSDT",
                   resources={"bybit": bybit, "kline_store": store}, selection=[price_klines_5m])
    assert current_results(instance, "no_missing_candles") == {"2025-01-02|BTCUSDT": "SUCCEEDED"}
    assert current_results(instance, "exact_and_complete", "price_klines_1h") == {
        "2025-01-02|BTCUSDT": "SUCCEEDED", "2025-01-03|BTCUSDT": "SUCCEEDED"}


def test_rollups_can_be_compared_with_the_exchanges_own_candles(instance, bybit, store, simulator, frozen_clock,
                                                                monkeypatch):
    monkeypatch.setenv("KLINE_CHECK_ROLLUPS_AGAINST_EXCHANGE", "1")
    key = "2025-01-05|BTCUSDT"
    run(instance, bybit, store, key=key, selection=dg.AssetSelection.assets(price_klines_5m, *rollup_assets))
    simulator.reset_requests()
    checks_only = dg.AssetSelection.checks_for_assets(*rollup_assets)
    got = results(run(instance, bybit, store, key=key, selection=checks_only))
    assert sorted(r.params["interval"] for r in simulator.kline_requests()) == sorted(
        ["15", "30", "60", "240", "720", "D"])  # one request per rollup per day
    quarter = got[("price_klines_15m", "exact_and_complete", key)]
    assert quarter.passed and quarter.metadata["exchange_buckets"].value == 96
    assert quarter.metadata["exchange_differences"].value == 0
    # A stored candle that differs from the exchange's, with the rollups recomputed from it: the
    # rollups are exact for what is stored, but no longer agree with Bybit.
    with store.engine().begin() as conn:
        conn.exec_driver_sql("UPDATE price_klines SET volume = volume + 1 WHERE symbol = 'BTCUSDT' "
                             "AND timestamp = '2025-01-05 07:00+00'")
    run(instance, bybit, store, key=key, selection=dg.AssetSelection.assets(*rollup_assets))
    after = results(run(instance, bybit, store, key=key, selection=checks_only))
    hour = after[("price_klines_1h", "exact_and_complete", key)]
    assert outcome(hour) == "failed ERROR" and hour.metadata["mismatched_buckets"].value == 0
    assert hour.metadata["first_exchange_differences"].value == "2025-01-05 07:00"
    monkeypatch.delenv("KLINE_CHECK_ROLLUPS_AGAINST_EXCHANGE")
    simulator.reset_requests()
    results(run(instance, bybit, store, key=key, selection=checks_only))
    assert simulator.kline_requests() == []  # off by default: no requests
