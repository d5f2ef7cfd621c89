"""A check's per-partition statuses kept by the process (instance/check_state.py) equal Dagster's
own rebuild from all of its history, after new results, a re-materialization and a wipe."""

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.asset_check_state import AssetCheckState, bulk_update_asset_check_state

from kline_pipeline_tests.test_event_writes import DAYS, FAILING, KEYS, RANGE, _graph


def _statuses(state: AssetCheckState) -> dict[str, list[str]]:
    return {status.value: sorted(subset.subset_value.get_partition_keys())
            for status, subset in state.subsets.items() if not subset.is_empty}


def test_kept_state_equals_dagsters_rebuild(dagster_env):
    instance = dagster_env
    days, checks, _ = _graph("state")
    (check_key,) = checks.check_keys
    job = dg.Definitions(assets=[days], asset_checks=[checks], jobs=[
        dg.define_asset_job("range", selection=dg.AssetSelection.all(), partitions_def=DAYS)]).resolve_job_def("range")

    def kept() -> dict[str, list[str]]:
        return _statuses(instance.event_log_storage.get_asset_check_state([(check_key, DAYS)])[check_key])

    def rebuilt() -> dict[str, list[str]]:  # Dagster's own answer, from the whole history
        with partition_loading_context(dynamic_partitions_store=instance):
            return _statuses(bulk_update_asset_check_state(
                instance, [(check_key, DAYS)], {check_key: AssetCheckState.empty()})[check_key])

    assert kept() == rebuilt() == {}
    assert job.execute_in_process(instance=instance, tags=RANGE).success
    passed = [k for k in KEYS if k != FAILING]
    assert kept() == rebuilt() == {"SUCCEEDED": passed, "FAILED": [FAILING]}
    # A new materialization of one day without its checks: its old result is no longer current.
    dg.materialize([days], instance=instance, partition_key=KEYS[0])
    assert kept() == rebuilt() == {"SUCCEEDED": passed[1:], "FAILED": [FAILING]}
    assert job.execute_in_process(instance=instance, tags=RANGE).success  # the kept state moves on
    assert kept() == rebuilt() == {"SUCCEEDED": passed, "FAILED": [FAILING]}
    instance.wipe_assets([days.key])  # deletes the check's executions: the kept state is dropped
    assert kept() == rebuilt() == {}
