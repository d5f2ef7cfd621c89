"""A check's per-partition statuses, kept by the process that answers for them and brought up to date.

Why: the check's Partitions tab (GraphQL `AssetCheck.partitionStatuses`) asks the event log
storage for the check's state. Dagster 1.13.27's open-source storage keeps no checkpoint of it
(`get_checkpointed_asset_check_state` answers "empty"), so every page load rebuilds it from every
partition ever checked, and for each one asks the database whether its symbol is still a
registered dynamic partition: 10 symbols x 2 years of results (7,300 per check) took 8.8 s per
page load in `bench/bench_dagster.py` — cost that grows with the history, against the issue's 1 s.

Here the webserver (any process) keeps the state it computed last, per check, and the next call
updates it with Dagster's own `bulk_update_asset_check_state` from that state's storage id: only
partitions whose check result or materialization is newer are read and folded in, exactly as
Dagster+ does with its stored checkpoints. The registered symbols are read once per update
instead of once per partition. A state is rebuilt from scratch when it was computed for another
partitions definition, or when the check has fewer execution rows than when it was computed (an
asset wipe, from any process, deletes them).
"""

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from dagster._core.definitions.asset_key import AssetCheckKey
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.partitions.definition.partitions_definition import PartitionsDefinition
from dagster._core.instance.types import CachingDynamicPartitionsLoader
from dagster._core.storage.asset_check_state import AssetCheckState, bulk_update_asset_check_state
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

if TYPE_CHECKING:
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage


def execution_rows(storage: "SqlEventLogStorage", keys: Sequence[AssetCheckKey]) -> dict[AssetCheckKey, int]:
    """How many execution rows each check has (one indexed count per call)."""
    table = AssetCheckExecutionsTable
    names = {(k.asset_key.to_string(), k.name): k for k in keys}
    with storage.index_connection() as conn:
        rows = conn.execute(
            sa.select(table.c.asset_key, table.c.check_name, sa.func.count())
            .where(table.c.asset_key.in_({a for a, _ in names}), table.c.check_name.in_({n for _, n in names}))
            .group_by(table.c.asset_key, table.c.check_name)).fetchall()
    counts = dict.fromkeys(keys, 0)
    for asset_key, check_name, count in rows:
        if (asset_key, check_name) in names:
            counts[names[(asset_key, check_name)]] = int(count)
    return counts


class CheckStates:
    """The last computed state of each check (a handful of checks: 3 raw, 6 rollups)."""

    def __init__(self) -> None:
        # check -> (the partitions definition, the state, the check's execution rows then)
        self._states: dict[AssetCheckKey, tuple[PartitionsDefinition | None, AssetCheckState, int]] = {}
        self._lock = threading.Lock()  # the webserver answers queries from several threads

    def updated(self, storage: "SqlEventLogStorage",
                keys: Sequence[tuple[AssetCheckKey, PartitionsDefinition | None]]) -> Mapping[AssetCheckKey, AssetCheckState]:
        rows = execution_rows(storage, [key for key, _ in keys])  # counted BEFORE the state is read
        with self._lock:
            initial = {}
            for key, partitions_def in keys:
                known = self._states.get(key)
                usable = known is not None and known[0] == partitions_def and known[2] <= rows[key]
                initial[key] = known[1] if known is not None and usable else AssetCheckState.empty()
        instance = storage._instance  # noqa: SLF001 - what Dagster's own get_asset_check_state passes
        with partition_loading_context(dynamic_partitions_store=CachingDynamicPartitionsLoader(instance)):
            states = bulk_update_asset_check_state(instance, keys, initial_states=initial)
        with self._lock:
            for key, partitions_def in keys:
                self._states[key] = (partitions_def, states[key], rows[key])
        return states
