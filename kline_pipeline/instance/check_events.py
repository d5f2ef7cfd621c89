"""A batch of asset-check results written in three statements instead of three per result.

Why: every check result is one Dagster event, and per partition our checks record nine of them
(three on the raw day, one per rollup): in a 92-day backfill run 828 results, in the first live
tick of 200 new symbols 5,400. dagster-postgres writes each with an INSERT into `event_logs`, a
NOTIFY (kept for version skew only), and an UPDATE of the check's execution row in
`asset_check_executions` (an INSERT when there was no planned row, as for an op's results) —
~5 ms each on this machine. Dagster 1.13.27 batches materializations (DAGSTER_EVENT_BATCH_SIZE)
but refuses to batch check results in `store_event_batch`.

This writes the same rows as `SqlEventLogStorage._update_asset_check_evaluation` would, for a
whole batch: one multi-row INSERT into `event_logs`, one UPDATE ... FROM (VALUES ...) of the
planned execution rows, one multi-row INSERT of the executions that had none. The results are
logged as a batch by `kline_pipeline.event_writes.log_check_evaluations`; if this raises, Dagster
falls back to writing the batch's events one by one (`handle_new_event`), so nothing is lost.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.errors import DagsterInvariantViolationError
from dagster._serdes import serialize_value


def is_run_check_batch(events: Sequence[EventLogEntry]) -> bool:
    """Every event is a check result of a run (runless results take another path in Dagster)."""
    return bool(events) and all(
        e.is_dagster_event and e.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION and e.run_id
        for e in events)


def _execution_row(storage: SqlEventLogStorage, event: EventLogEntry, event_id: int) -> dict[str, Any]:
    evaluation = event.get_dagster_event().event_specific_data
    assert isinstance(evaluation, AssetCheckEvaluation)
    target = evaluation.target_materialization_data
    return {
        "asset_key": evaluation.asset_key.to_string(), "check_name": evaluation.check_name,
        "run_id": event.run_id, "partition": evaluation.partition,
        "execution_status": (AssetCheckExecutionRecordStatus.SUCCEEDED.value if evaluation.passed
                             else AssetCheckExecutionRecordStatus.FAILED.value),
        "evaluation_event": serialize_value(event),
        "evaluation_event_timestamp": storage._event_insert_timestamp(event),  # noqa: SLF001 (same as Dagster)
        "evaluation_event_storage_id": event_id,
        "materialization_event_storage_id": target.storage_id if target else None,
    }


def store_check_evaluation_batch(storage: SqlEventLogStorage, connection: sa.Connection,
                                 events: Sequence[EventLogEntry]) -> None:
    """Store run-scoped check results `events` (is_run_check_batch) in one transaction."""
    inserted = connection.execute(
        storage.prepare_insert_event_batch(events).returning(SqlEventLogStorageTable.c.id)).fetchall()
    rows = [_execution_row(storage, event, int(row[0])) for event, row in zip(events, inserted, strict=True)]
    table = AssetCheckExecutionsTable
    names = ["asset_key", "check_name", "run_id", "partition", "execution_status", "evaluation_event",
             "evaluation_event_timestamp", "evaluation_event_storage_id", "materialization_event_storage_id"]
    values = sa.values(*(sa.column(n, table.c[n].type) for n in names), name="v").data(
        [tuple(row[n] for n in names) for row in rows])
    # The execution row a planned event created: same (asset_key, check_name, run_id, partition).
    updated = connection.execute(
        table.update()
        .where(table.c.asset_key == values.c.asset_key, table.c.check_name == values.c.check_name,
               table.c.run_id == values.c.run_id, table.c.partition.is_not_distinct_from(values.c.partition))
        .values({n: values.c[n] for n in names[4:]} | {"partition": values.c.partition})
        .returning(values.c.evaluation_event_storage_id)).fetchall()
    counts: dict[int, int] = {}
    for (event_id,) in updated:
        counts[event_id] = counts.get(event_id, 0) + 1
    duplicated = [event_id for event_id, n in counts.items() if n > 1]
    if duplicated:  # as Dagster: duplicate planned events
        raise DagsterInvariantViolationError(
            f"updated several asset check execution rows for the evaluation(s) stored as {duplicated[:5]}")
    missing = [row for row in rows if row["evaluation_event_storage_id"] not in counts]
    if missing:  # no planned row (an op's results): Dagster inserts one
        connection.execute(table.insert(), missing)
