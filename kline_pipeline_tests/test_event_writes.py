"""Batched Dagster event writes (kline_pipeline/event_writes.py, instance/check_events.py) store
exactly what Dagster's one-by-one writes store, and what the UI reads from them is the same."""

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

from kline_pipeline.event_writes import log_check_evaluations, log_materializations
from kline_pipeline.instance import storage as storage_module
from kline_pipeline.instance.check_events import store_check_evaluation_batch
from kline_pipeline.instance.env import EVENT_BATCH_ENV

DAYS = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-01-04")
KEYS = ["2025-01-01", "2025-01-02", "2025-01-03"]
RANGE = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}
FAILING = "2025-01-02"


def _graph(prefix: str) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition, dg.JobDefinition]:
    """An asset, a check step recording one result per partition (passed except FAILING), and an
    op that logs materializations and results itself (no planned check rows: the insert path)."""
    @dg.asset(name=f"{prefix}_days", partitions_def=DAYS,
              backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=10))
    def days(context: dg.AssetExecutionContext) -> None:
        return None

    spec = dg.AssetCheckSpec("complete", asset=days, partitions_def=DAYS)

    @dg.multi_asset_check(specs=[spec], can_subset=True, name=f"{prefix}_checks")
    def checks(context: dg.AssetCheckExecutionContext):
        op_context = context.op_execution_context
        targets = {r.partition_key: r for r in op_context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=days.key, asset_partitions=KEYS), limit=10).records}
        from dagster._core.definitions.asset_checks.asset_check_evaluation import (
            AssetCheckEvaluationTargetMaterializationData as Target,
        )
        log_check_evaluations(op_context, [dg.AssetCheckEvaluation(
            asset_key=days.key, check_name="complete", passed=key != FAILING, partition=key,
            metadata={"day": key}, severity=dg.AssetCheckSeverity.WARN,
            target_materialization_data=Target(storage_id=targets[key].storage_id, run_id=targets[key].run_id,
                                               timestamp=targets[key].timestamp)) for key in KEYS])
        yield from ()

    @dg.op(name=f"{prefix}_live")
    def live(context: dg.OpExecutionContext) -> None:
        log_materializations(context, [dg.AssetMaterialization(days.key, partition=k, metadata={"n": i})
                                       for i, k in enumerate(KEYS)])
        log_check_evaluations(context, [dg.AssetCheckEvaluation(
            asset_key=days.key, check_name="complete", passed=True, partition=k) for k in KEYS])

    @dg.job(name=f"{prefix}_live_job")
    def live_job() -> None:
        live()

    return days, checks, live_job


def _executions(url: str, asset: str) -> list[tuple]:
    """The check's execution rows without ids, run ids and times: what the UI reads, comparable."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT x.partition, x.execution_status, (x.materialization_event_storage_id IS NOT NULL), "
            "       e.dagster_event_type "
            "FROM asset_check_executions x JOIN event_logs e ON e.id = x.evaluation_event_storage_id "
            "WHERE x.asset_key = :key ORDER BY x.id"), {"key": f'["{asset}"]'}).fetchall()
    engine.dispose()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("batch", ["1000", "0"])
def test_check_results_written_in_a_batch_are_current_per_partition(dagster_env, dagster_storage, monkeypatch, batch):
    monkeypatch.setenv(EVENT_BATCH_ENV, batch)  # "0": Dagster's one-by-one writes, the reference
    batches: list[int] = []  # the batch path runs for real; this only counts its calls

    def counted(storage, connection, events):
        batches.append(len(events))
        return store_check_evaluation_batch(storage, connection, events)

    monkeypatch.setattr(storage_module, "store_check_evaluation_batch", counted)
    instance = dagster_env
    days, checks, live_job = _graph(f"b{batch}")
    defs = dg.Definitions(assets=[days], asset_checks=[checks], jobs=[
        dg.define_asset_job("range", selection=dg.AssetSelection.all(), partitions_def=DAYS), live_job])
    assert defs.resolve_job_def("range").execute_in_process(instance=instance, tags=RANGE).success
    infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info(
        [checks.check_keys.pop()], partition_keys=KEYS)}
    assert {k: (i.latest_execution_status, i.is_current) for k, i in infos.items()} == {
        "2025-01-01": (Status.SUCCEEDED, True), FAILING: (Status.FAILED, True), "2025-01-03": (Status.SUCCEEDED, True)}
    # One planned row per partition, each updated in place by its result.
    assert _executions(dagster_storage, days.key.path[-1]) == [
        (k, "SUCCEEDED" if k != FAILING else "FAILED", True, "ASSET_CHECK_EVALUATION") for k in KEYS]

    result = defs.resolve_job_def(live_job.name).execute_in_process(instance=instance)
    assert [m.partition for m in result.asset_materializations_for_node(f"b{batch}_live")] == KEYS
    assert [e.partition for e in result.get_asset_check_evaluations()] == KEYS
    # The op's results had no planned rows: one new row each, pointing at its evaluation event.
    assert _executions(dagster_storage, days.key.path[-1])[3:] == [
        (k, "SUCCEEDED", False, "ASSET_CHECK_EVALUATION") for k in KEYS]
    records = instance.fetch_materializations(days.key, limit=10).records
    assert sorted(r.partition_key for r in records[:3]) == KEYS  # the op's batch is the newest
    # Batched: each step's three results in one write (not Dagster's fallback to one by one).
    assert batches == ([3, 3] if batch != "0" else [])
