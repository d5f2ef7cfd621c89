"""A check's per-partition statuses, kept by the process that answers for them and brought up to date.

Why: the check's Partitions tab (GraphQL `AssetCheck.partitionStatuses`) asks the event log
storage for the check's state. Dagster 1.13.27's open-source storage keeps no checkpoint of it
(`get_checkpointed_asset_check_state` answers "empty"), so every page load rebuilds it from every
partition ever checked, and for each one asks the database whether its symbol is still a
registered dynamic partition: 10 symbols x 2 years of results (7,300 per check) took 2.6 s per
page load in `bench/bench_dagster.py` (9-12 s at load ~10) - cost that grows with the history,
against the issue's 1 s.

Here the webserver (any process) keeps the state it computed last, per check, and the next call
folds in only the partitions whose latest check result or materialization is newer than that
state's storage id. Dagster's own incremental update (`AssetCheckState.with_updates`) is not used:
it adds a partition to its new status without taking it out of the old one, so a day that failed
and then passed shows as failed, and a day planned by a run that later succeeded turns "skipped"
when the run ends (it was written for a full rebuild, where every partition is seen once). The
fold below first removes the re-read partitions from every status and in-progress run, then
applies Dagster's rules (planned -> in progress, a current result -> its status, a result older
than the latest materialization -> none), then resolves finished runs with Dagster's own code.

A state is rebuilt from scratch when it was computed for another partitions definition, when the
registered symbols changed (results of a symbol are only counted while it is registered), when
any of the check's execution rows or of its asset's materializations it had seen is gone (an asset
wipe, a deleted run — from any process: a deleted materialization can make an older result current
again, which no newer storage id announces), and every REBUILD_SECONDS in any case.
"""

import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from dagster._core.asset_graph_view.serializable_entity_subset import SerializableEntitySubset
from dagster._core.definitions.asset_key import AssetCheckKey
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.partitions.definition import (
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
)
from dagster._core.definitions.partitions.definition.partitions_definition import PartitionsDefinition
from dagster._core.instance.types import CachingDynamicPartitionsLoader
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
    AssetCheckExecutionResolvedStatus,
    AssetCheckPartitionInfo,
)
from dagster._core.storage.asset_check_state import (
    AssetCheckState,
    _process_run_statuses,
    bulk_update_asset_check_state,
)
from dagster._core.storage.dagster_run import FINISHED_STATUSES, DagsterRunStatus, RunsFilter
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable

if TYPE_CHECKING:
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

REREAD_IDS = 10_000
"""Storage ids re-read below the last one seen. A transaction takes its ids when it inserts and
shows them when it commits, so a batch of check results can become visible after a later, smaller
write was already read; re-reading the last ids (folding a partition twice changes nothing) keeps
such a batch from being skipped for good."""


REBUILD_SECONDS = 600.0
"""A kept state is rebuilt from scratch at least this often, which bounds what the update cannot
see: a result visible only after more than REREAD_IDS later ids were read, or one for a day that
was not yet a partition when it was read (a clock ahead of the server's)."""


@dataclass(frozen=True)
class _Rows:
    """A table's rows of one check (or of its asset's materializations), as last seen."""

    last_id: int
    count: int

    def lost_since(self, earlier: "_Rows", up_to_earlier_last: int) -> bool:
        """Rows that `earlier` counted are gone (a wipe, a deleted run): `up_to_earlier_last` is
        today's count of rows with an id <= earlier.last_id."""
        return up_to_earlier_last < earlier.count


@dataclass(frozen=True)
class _Seen:
    """What a kept state was computed from, to know when it no longer applies."""

    partitions_def: PartitionsDefinition
    dynamic_keys: tuple[tuple[str, ...], ...]
    executions: _Rows
    materializations: _Rows
    built_at: float
    """time.monotonic() of the last rebuild from scratch."""


@dataclass(frozen=True)
class _Kept:
    seen: _Seen
    state: AssetCheckState


def _dynamic_names(partitions_def: PartitionsDefinition) -> list[str]:
    parts = ([d.partitions_def for d in partitions_def.partitions_defs]
             if isinstance(partitions_def, MultiPartitionsDefinition) else [partitions_def])
    return [p.name for p in parts if isinstance(p, DynamicPartitionsDefinition) and p.name]


def _row_counts(storage: "SqlEventLogStorage", key: AssetCheckKey,
                seen: "_Seen | None") -> tuple[_Rows, _Rows, bool]:
    """The check's execution rows and its asset's materialization events now, and whether any row
    the kept state had seen was deleted since (two indexed aggregates)."""
    checks, events = AssetCheckExecutionsTable, SqlEventLogStorageTable
    queries = (
        (checks.c.id, (checks.c.asset_key == key.asset_key.to_string(), checks.c.check_name == key.name),
         seen.executions if seen else None),
        (events.c.id, (events.c.asset_key == key.asset_key.to_string(),
                       events.c.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION.value),
         seen.materializations if seen else None))
    found, lost = [], False
    with storage.index_connection() as conn:
        for id_column, where, before in queries:
            last, count, up_to_before = conn.execute(sa.select(
                sa.func.coalesce(sa.func.max(id_column), 0), sa.func.count(),
                sa.func.count().filter(id_column <= (before.last_id if before else 0))).where(*where)).one()
            found.append(_Rows(int(last), int(count)))
            lost = lost or (before is not None and found[-1].lost_since(before, int(up_to_before)))
    return found[0], found[1], lost


def _fold(state: AssetCheckState, key: AssetCheckKey, partitions_def: PartitionsDefinition,
          infos: Sequence[AssetCheckPartitionInfo], finished: Mapping[str, DagsterRunStatus]) -> AssetCheckState:
    """`state` with the partitions of `infos` replaced by what their latest records say."""

    def subset(partition_keys: Sequence[str]) -> SerializableEntitySubset[AssetCheckKey]:
        return SerializableEntitySubset(key=key, value=partitions_def.subset_with_partition_keys(partition_keys))

    empty = SerializableEntitySubset.empty(key, partitions_def)
    valid = [i for i in infos if i.partition_key is not None and partitions_def.has_partition_key(i.partition_key)]
    touched = subset([i.partition_key for i in valid if i.partition_key is not None])
    subsets = {status: state.subsets.get(status, empty).compute_difference(touched)
               for status in AssetCheckExecutionResolvedStatus}
    runs = {run: s.compute_difference(touched) for run, s in state.in_progress_runs.items()}
    by_status: dict[AssetCheckExecutionResolvedStatus, list[str]] = defaultdict(list)
    by_run: dict[str, list[str]] = defaultdict(list)
    for info in valid:
        assert info.partition_key is not None
        if info.latest_execution_status == AssetCheckExecutionRecordStatus.PLANNED:
            by_status[AssetCheckExecutionResolvedStatus.IN_PROGRESS].append(info.partition_key)
            by_run[info.latest_planned_run_id].append(info.partition_key)
        elif info.is_current:
            by_status[AssetCheckExecutionResolvedStatus(info.latest_execution_status.value)].append(info.partition_key)
        # else: materialized again since its latest result, so it has no status (Dagster's rule)
    for status, partition_keys in by_status.items():
        subsets[status] = subsets[status].compute_union(subset(partition_keys))
    for run, partition_keys in by_run.items():
        runs[run] = runs.get(run, empty).compute_union(subset(partition_keys))
    new_subsets, new_runs = _process_run_statuses(
        key, partitions_def, subsets, {run: s for run, s in runs.items() if not s.is_empty}, finished)
    latest = max((max(i.latest_check_event_storage_id, i.latest_materialization_storage_id or 0) for i in infos),
                 default=0)
    return AssetCheckState(latest_storage_id=max(latest, state.latest_storage_id),
                           subsets=new_subsets, in_progress_runs=new_runs)


class CheckStates:
    """The last computed state of each check (a handful of checks: 3 raw, 6 rollups)."""

    def __init__(self) -> None:
        self._kept: dict[AssetCheckKey, _Kept] = {}
        self._lock = threading.Lock()  # the webserver answers queries from several threads

    def updated(self, storage: "SqlEventLogStorage",
                keys: Sequence[tuple[AssetCheckKey, PartitionsDefinition | None]]) -> Mapping[AssetCheckKey, AssetCheckState]:
        instance = storage._instance  # noqa: SLF001 - what Dagster's own get_asset_check_state passes
        loader = CachingDynamicPartitionsLoader(instance)
        # An unpartitioned check has one result to read: Dagster's own rebuild is already cheap.
        plain = [(key, None) for key, partitions_def in keys if partitions_def is None]
        result = dict(bulk_update_asset_check_state(instance, plain, dict.fromkeys(
            [key for key, _ in plain], AssetCheckState.empty()))) if plain else {}
        partitioned = [(key, p) for key, p in keys if p is not None]
        if not partitioned:
            return result
        with self._lock:
            kept = {key: self._kept.get(key) for key, _ in partitioned}
        seen: dict[AssetCheckKey, _Seen] = {}
        starts: dict[AssetCheckKey, AssetCheckState] = {}
        for key, partitions_def in partitioned:
            old = kept[key]
            # Read before the results, so a row written meanwhile is re-read next time, not lost.
            executions, materializations, lost = _row_counts(storage, key, old.seen if old else None)
            dynamic = tuple(tuple(loader.get_dynamic_partitions(name)) for name in _dynamic_names(partitions_def))
            now = time.monotonic()
            usable = (old is not None and old.seen.partitions_def == partitions_def
                      and old.seen.dynamic_keys == dynamic and not lost
                      and now - old.seen.built_at < REBUILD_SECONDS)
            starts[key] = old.state if old is not None and usable else AssetCheckState.empty()
            seen[key] = _Seen(partitions_def, dynamic, executions, materializations,
                              built_at=old.seen.built_at if old is not None and usable else now)
        # One read per check from its own storage id (Dagster's read is one query per check anyway),
        # so a check with no results yet does not make the others re-read their whole history.
        infos = [info for key, _ in partitioned for info in storage.get_asset_check_partition_info(
            [key], after_storage_id=max(0, starts[key].latest_storage_id - REREAD_IDS) or None)]
        run_ids = {run for state in starts.values() for run in state.in_progress_runs}
        run_ids |= {i.latest_planned_run_id for i in infos
                    if i.latest_execution_status == AssetCheckExecutionRecordStatus.PLANNED}
        finished = {run.run_id: run.status for run in instance.get_runs(
            filters=RunsFilter(run_ids=sorted(run_ids), statuses=FINISHED_STATUSES))} if run_ids else {}
        by_key: dict[AssetCheckKey, list[AssetCheckPartitionInfo]] = defaultdict(list)
        for info in infos:
            by_key[info.check_key].append(info)
        with partition_loading_context(dynamic_partitions_store=loader):
            states = {key: _fold(starts[key], key, partitions_def, by_key[key], finished)
                      for key, partitions_def in partitioned}
        with self._lock:
            for key, _ in partitioned:
                self._kept[key] = _Kept(seen[key], states[key])
        return {**result, **states}
