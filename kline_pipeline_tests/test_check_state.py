"""A check's per-partition statuses kept by the process (instance/check_state.py) equal Dagster's
own rebuild from all of its history: while a run is in progress, after it, when a failed day
passes later, after a re-materialization without checks and the deletion of its run, a symbol
removed and added, and a wipe."""

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.asset_check_state import AssetCheckState, bulk_update_asset_check_state

from kline_pipeline.checks.specs import target_materializations
from kline_pipeline.event_writes import log_check_evaluations
from kline_pipeline_tests.test_event_writes import DAYS, FAILING, KEYS, RANGE

SYMBOLS = dg.DynamicPartitionsDefinition(name="state_symbols")
GRID = dg.MultiPartitionsDefinition({"date": DAYS, "symbol": SYMBOLS})


def _statuses(state: AssetCheckState) -> dict[str, list[str]]:
    return {status.value: sorted(str(k) for k in subset.subset_value.get_partition_keys())
            for status, subset in state.subsets.items() if not subset.is_empty}


def test_kept_state_equals_dagsters_rebuild(dagster_env, monkeypatch):
    from kline_pipeline.instance import check_state

    # No re-read margin: a history longer than the margin, where only the update itself counts.
    monkeypatch.setattr(check_state, "REREAD_IDS", 0)
    instance = dagster_env
    instance.add_dynamic_partitions(SYMBOLS.name, ["AAA"])
    grid_keys = [dg.MultiPartitionKey({"date": d, "symbol": "AAA"}) for d in KEYS]
    failing = dg.MultiPartitionKey({"date": FAILING, "symbol": "AAA"})
    seen_in_run: list[dict[str, list[str]]] = []

    @dg.asset(name="state_days", partitions_def=GRID)
    def days(context: dg.AssetExecutionContext) -> None:
        return None

    spec = dg.AssetCheckSpec("complete", asset=days, partitions_def=GRID)
    check_key = spec.key

    never_run = dg.AssetCheckKey(days.key, "never_run")  # asked for together, as the Checks tab does

    def kept() -> dict[str, list[str]]:
        states = instance.event_log_storage.get_asset_check_state([(check_key, GRID), (never_run, GRID)])
        assert _statuses(states[never_run]) == {}
        return _statuses(states[check_key])

    def rebuilt() -> dict[str, list[str]]:  # Dagster's own answer, from the whole history
        with partition_loading_context(dynamic_partitions_store=instance):
            return _statuses(bulk_update_asset_check_state(
                instance, [(check_key, GRID)], {check_key: AssetCheckState.empty()})[check_key])

    @dg.multi_asset_check(specs=[spec], can_subset=True, name="state_checks")
    def checks(context: dg.AssetCheckExecutionContext):
        seen_in_run.append(kept())  # the results are planned, not yet recorded
        op_context = context.op_execution_context
        keys = op_context.partition_keys
        targets = target_materializations(op_context.instance, days.key, keys)
        log_check_evaluations(op_context, [dg.AssetCheckEvaluation(
            asset_key=days.key, check_name="complete", passed=key != failing, partition=key,
            target_materialization_data=targets[key]) for key in keys])
        yield from ()

    job = dg.Definitions(assets=[days], asset_checks=[checks], jobs=[dg.define_asset_job(
        "range", selection=dg.AssetSelection.all(), partitions_def=GRID)]).resolve_job_def("range")
    run_tags = {**RANGE, "dagster/asset_partition_range_start": str(grid_keys[0]),
                "dagster/asset_partition_range_end": str(grid_keys[-1])}
    names = [str(k) for k in grid_keys]
    passed = [n for n in names if n != str(failing)]

    assert kept() == rebuilt() == {}
    assert job.execute_in_process(instance=instance, tags=run_tags).success
    assert seen_in_run == [{"IN_PROGRESS": names}]  # as Dagster showed it during the run
    assert kept() == rebuilt() == {"SUCCEEDED": passed, "FAILED": [str(failing)]}

    # The failed day passes later (a result recorded outside a run, as the watchdog's are):
    # Dagster's incremental update would leave it in FAILED too.
    targets = target_materializations(instance, days.key, [failing])
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=days.key, check_name="complete", passed=True, partition=failing,
        target_materialization_data=targets[failing]))
    assert kept() == rebuilt() == {"SUCCEEDED": names}

    # A new materialization of one day without its checks: its old result is no longer current.
    again = dg.materialize([days], instance=instance, partition_key=grid_keys[0])
    assert kept() == rebuilt() == {"SUCCEEDED": names[1:]}
    # That run deleted: the result it had outdated is current again, with no new storage id.
    instance.delete_run(again.run_id)
    assert kept() == rebuilt() == {"SUCCEEDED": names}
    dg.materialize([days], instance=instance, partition_key=grid_keys[0])
    assert kept() == rebuilt() == {"SUCCEEDED": names[1:]}
    assert job.execute_in_process(instance=instance, tags=run_tags).success  # the kept state moves on
    assert seen_in_run[-1] == {"IN_PROGRESS": names}
    assert kept() == rebuilt() == {"SUCCEEDED": passed, "FAILED": [str(failing)]}

    # A symbol removed and another added: its results count only while it is registered.
    instance.delete_dynamic_partition(SYMBOLS.name, "AAA")
    assert kept() == rebuilt() == {}
    instance.add_dynamic_partitions(SYMBOLS.name, ["AAA", "BBB"])
    assert kept() == rebuilt() == {"SUCCEEDED": passed, "FAILED": [str(failing)]}

    instance.wipe_assets([days.key])  # deletes the check's executions: the kept state is dropped
    assert kept() == rebuilt() == {}
