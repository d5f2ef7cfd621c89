"""rollup_refresh_sensor: a cursor over raw materializations, exactly the stale rollup days, batched."""

from datetime import date

import dagster as dg
import pytest

from dagster._core.events import StepMaterializationData
from dagster._core.test_utils import create_run_for_test

from kline_pipeline.assets import PARTITIONS_PER_RUN, price_klines_5m
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import rollup_assets
from kline_pipeline.sensors import (
    ROLLUP_KEYS,
    RollupCursor,
    evaluate_tick,
    requested_partitions,
    rollup_refresh_sensor,
    run_requests,
)

RANGE = {"start": "dagster/asset_partition_range_start", "end": "dagster/asset_partition_range_end"}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT", "ETHUSDT"])
        yield inst


def materialize(instance, resources, assets, first: str, last: str) -> None:
    dg.materialize(assets, instance=instance, resources=resources,
                   tags={RANGE["start"]: first, RANGE["end"]: last})


def tick(instance, cursor: RollupCursor, store) -> tuple[list[dg.RunRequest], RollupCursor]:
    """One tick of the real sensor definition, as the daemon calls it."""
    # As a context manager: its resources are released now, not whenever the garbage collector
    # finalizes them (which reset Dagster's context-local state under a later test).
    with dg.build_sensor_context(instance=instance, cursor=cursor.dumps(), resources={"kline_store": store}) as context:
        result = rollup_refresh_sensor(context)
    return list(result.run_requests or []), RollupCursor.parse(result.cursor)


def test_raw_updates_request_exactly_their_rollup_days_per_symbol_and_range(instance, bybit, kline_store, simulator,
                                                                            frozen_clock):
    resources = {"bybit": bybit, "kline_store": kline_store}
    requests, cursor = tick(instance, RollupCursor(), kline_store)
    assert requests == [] and cursor.after == 0
    for symbol in ("BTCUSDT", "ETHUSDT"):  # the raw asset alone, 30 days, two symbols
        materialize(instance, resources, [price_klines_5m], f"2025-01-01|{symbol}", f"2025-01-30|{symbol}")
    # One day materialized together with its rollups: nothing more to do for it.
    materialize(instance, resources, [price_klines_5m, *rollup_assets], "2025-02-10|BTCUSDT", "2025-02-10|BTCUSDT")
    requests, cursor = tick(instance, cursor, kline_store)
    assert requested_partitions(requests) == [("2025-01-01|BTCUSDT", "2025-01-30|BTCUSDT"),
                                              ("2025-01-01|ETHUSDT", "2025-01-30|ETHUSDT")]
    assert all(sorted(r.asset_selection, key=str) == sorted(ROLLUP_KEYS, key=str) for r in requests)
    assert len({r.run_key for r in requests}) == 2 and cursor.waiting == ()
    # The requested runs refresh the rollups; then nothing is stale and nothing is requested.
    for request in requests:
        materialize(instance, resources, rollup_assets, request.tags[RANGE["start"]], request.tags[RANGE["end"]])
    again, cursor = tick(instance, cursor, kline_store)
    assert again == []
    # Only the rollups older than the raw day are refreshed: re-materialize one raw day alone.
    materialize(instance, resources, [price_klines_5m], "2025-01-15|ETHUSDT", "2025-01-15|ETHUSDT")
    one, _ = tick(instance, cursor, kline_store)
    assert requested_partitions(one) == [("2025-01-15|ETHUSDT", "2025-01-15|ETHUSDT")]


def test_a_tick_reads_only_what_is_new(instance, bybit, kline_store, simulator, frozen_clock):
    """The cursor is a storage id: a tick after the work is done judges nothing old again."""
    resources = {"bybit": bybit, "kline_store": kline_store}
    materialize(instance, resources, [price_klines_5m], "2025-01-01|BTCUSDT", "2025-01-03|BTCUSDT")
    requests, cursor = evaluate_tick(instance, RollupCursor())
    assert len(requests) == 1 and cursor.after > 0
    # Without new raw events the same cursor asks for nothing, even though the rollups are still stale.
    assert evaluate_tick(instance, cursor) == ([], cursor)


def test_a_run_still_in_progress_is_judged_when_it_ends(instance):
    """Raw days of a run that has not ended wait in the cursor (the run may still refresh their
    rollups itself), and are judged once it has ended."""
    run = create_run_for_test(instance, job_name="a_backfill_run", status=dg.DagsterRunStatus.STARTED)
    instance.report_dagster_event(dg.DagsterEvent(
        event_type_value="ASSET_MATERIALIZATION", job_name=run.job_name, message="raw day",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(price_klines_5m.key, partition="2025-01-05|BTCUSDT"))), run_id=run.run_id)
    requests, cursor = evaluate_tick(instance, RollupCursor())
    assert requests == [] and cursor.waiting == (run.run_id,)
    instance.handle_run_event(run.run_id, dg.DagsterEvent(
        event_type_value="PIPELINE_SUCCESS", job_name=run.job_name, message="done"))
    requests, cursor = evaluate_tick(instance, cursor)
    assert requested_partitions(requests) == [("2025-01-05|BTCUSDT", "2025-01-05|BTCUSDT")]
    assert cursor.waiting == ()


def test_a_foreign_cursor_starts_from_the_beginning(instance, bybit, kline_store, simulator, frozen_clock):
    """The AutomationCondition sensor this one replaced left its own cursor under the same name."""
    materialize(instance, {"bybit": bybit, "kline_store": kline_store}, [price_klines_5m], "2025-01-01|BTCUSDT",
                "2025-01-02|BTCUSDT")
    legacy = "0eJzLSM3JyVcozy/KSQEAGgQEXQ=="  # not ours: base64 of compressed serdes, as Dagster stores
    with dg.build_sensor_context(instance=instance, cursor=legacy, resources={"kline_store": kline_store}) as context:
        result = rollup_refresh_sensor(context)
    assert requested_partitions(result.run_requests) == [("2025-01-01|BTCUSDT", "2025-01-02|BTCUSDT")]
    assert RollupCursor.parse(result.cursor).after > 0


def test_a_run_longer_than_a_page_is_judged_once(instance, monkeypatch):
    """Raw days of a waiting run beyond the tick's page are judged by a later page, not twice."""
    import kline_pipeline.sensors as sensors

    run = create_run_for_test(instance, job_name="a_backfill_run", status=dg.DagsterRunStatus.STARTED)
    for day in range(1, 7):
        instance.report_dagster_event(dg.DagsterEvent(
            event_type_value="ASSET_MATERIALIZATION", job_name=run.job_name, message="raw day",
            event_specific_data=StepMaterializationData(
                dg.AssetMaterialization(price_klines_5m.key, partition=f"2025-01-0{day}|BTCUSDT"))), run_id=run.run_id)
    monkeypatch.setattr(sensors, "PAGE", 2)
    requests, cursor = evaluate_tick(instance, RollupCursor())  # reads 2 of 6, the run is still going
    assert requests == [] and cursor.waiting == (run.run_id,)
    instance.handle_run_event(run.run_id, dg.DagsterEvent(
        event_type_value="PIPELINE_SUCCESS", job_name=run.job_name, message="done"))
    first, cursor = evaluate_tick(instance, cursor)  # the run's days up to this page's end: 1-4
    second, cursor = evaluate_tick(instance, cursor)  # the next page: 5-6, not 1-4 again
    third, cursor = evaluate_tick(instance, cursor)
    assert requested_partitions(first) == [("2025-01-01|BTCUSDT", "2025-01-04|BTCUSDT")]
    assert requested_partitions(second) == [("2025-01-05|BTCUSDT", "2025-01-06|BTCUSDT")]
    assert third == []


def test_requests_are_split_into_contiguous_ranges_of_at_most_a_quarter():
    days = [date.fromordinal(date(2024, 1, 1).toordinal() + i) for i in range(200)]  # to 18 July
    stale = {f"{d.isoformat()}|BTCUSDT": frozenset(ROLLUP_KEYS) for d in days if d != date(2024, 1, 10)}
    stale["2024-02-01|ETHUSDT"] = frozenset(ROLLUP_KEYS[:1])
    stale["2024-01-01|btc|usdt"] = frozenset(ROLLUP_KEYS)  # a malformed key added by hand is ignored
    requests = run_requests(stale, unique=7)
    assert PARTITIONS_PER_RUN == 92
    assert requested_partitions(requests) == [
        ("2024-01-01|BTCUSDT", "2024-01-09|BTCUSDT"), ("2024-01-11|BTCUSDT", "2024-04-11|BTCUSDT"),
        ("2024-04-12|BTCUSDT", "2024-07-12|BTCUSDT"), ("2024-07-13|BTCUSDT", "2024-07-18|BTCUSDT"),
        ("2024-02-01|ETHUSDT", "2024-02-01|ETHUSDT")]
    assert requests[-1].asset_selection == [ROLLUP_KEYS[0]]  # only the rollup that is stale there
