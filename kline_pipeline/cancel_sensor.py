"""`cancel_sensor`: a backfill canceled in the UI is CANCELED within seconds, not a minute or more.

The UI's Cancel only marks the backfill CANCELING. Dagster's backfill daemon (1.13.27,
`dagster._daemon.backfill` / `asset_backfill.py`) then works on its fixed 30-second loop
(`DEFAULT_DAEMON_INTERVAL_SECONDS`, a constant: no instance setting shortens it): one loop stops
the runs it finds QUEUED or STARTED (`cancel_backfill_runs_and_cancellation_complete`), a later
loop marks the backfill CANCELED once none of its runs is unfinished. Two things stretched that
past a minute (bench/bench_cancel.py without this sensor: 37.8-86.1 s, median 64.7 s):
- a run the queue had launched but that had not started yet (STARTING) is not stoppable by that
  loop; it starts, runs until the next loop terminates it, and CANCELED waits a third loop;
- while the daemon's worker thread for the backfill is still creating a run (10-40 s each on
  two busy cores: a run's planned events), the daemon skips the backfill altogether.

Every `CANCEL_SENSOR_SECONDS` this sensor does, for every CANCELING backfill, what
`kline_pipeline.cancel.cancel_backfill` does for a CLI/API cancel (queued runs canceled, started
runs terminated; each keeps the whole days it wrote), also cancels a run the daemon is still
creating (so it is never queued), and once none of the backfill's runs is unfinished marks it
CANCELED itself, as the daemon's loop would.
A run the daemon's thread still creates after that is caught: the sensor remembers the backfills
it ended for `LATE_RUN_WATCH_SECONDS` (its cursor, pruned: it does not grow) and stops any run of
theirs that appears. Left to the daemon: the backfill's per-asset partition counts of the canceled
runs (its final cancel iteration records them as failed; here they stay "requested"). The race with
the daemon's own writes is the one `cancel_backfill` already has (a write of the backfill from a
copy read just before): at worst the status goes back to CANCELING and the next tick ends it again.

Measured (bench/bench_cancel.py, UI cancel of a running six-run backfill, two shared cores):
CANCELED 5.4 / 9.2 / 22.3 s (min / median / max, 6 trials) after the cancel; the slowest waited
for a run the queue had launched just before the cancel to start (10-20 s here) and be stopped.

Cost: an idle tick is one query by status (indexed, no rows: 0.5 ms median in-process on the
local PostgreSQL); a CANCELING backfill adds a few run counts. It requests no runs; what Dagster
stores per tick is its tick row (about 730 bytes) and this small cursor.
"""

import json
import time

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES, DagsterRunStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._time import get_current_timestamp

from kline_pipeline.cancel import stop_runs

CANCEL_SENSOR_SECONDS = 1
"""Ask for a tick as often as possible: the sensor daemon evaluates sensors every 5 s at most."""
LATE_RUN_WATCH_SECONDS = 600.0
"""How long a backfill this sensor ended is watched for a run the daemon was still creating."""


def _parse(cursor: str | None) -> dict[str, float]:
    return json.loads(cursor) if cursor else {}


def _has_unfinished_runs(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    """True while any run of the backfill is not finished, including one still being created."""
    return bool(instance.get_run_ids(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id},
                                                   statuses=list(NOT_FINISHED_STATUSES)), limit=1))


def _mark_canceled(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    """CANCELING -> CANCELED with its end time, as the daemon's cancel iteration does; False if
    the backfill is no longer CANCELING (the daemon got there first, or it was resumed)."""
    backfill = instance.get_backfill(backfill_id)
    if backfill is None or backfill.status != BulkActionStatus.CANCELING:
        return False
    instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELED).with_end_timestamp(get_current_timestamp()))
    return True


def _cancel_unsubmitted(instance: dg.DagsterInstance, backfill_id: str) -> int:
    """Cancel the backfill's runs the daemon is still creating (NOT_STARTED); how many.

    Creating a run (its planned events) took the daemon 10-40 s here. A run marked CANCELED
    meanwhile is never queued: `DagsterInstance.submit_run` reads the run again and the queue
    skips one that is not NOT_STARTED. Should the enqueue slip in between, the run is QUEUED and
    the next tick cancels it like any other.
    """
    runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}, statuses=[DagsterRunStatus.NOT_STARTED]))
    for run in runs:
        instance.report_run_canceled(run, message="Canceled while being created: its backfill was canceled.")
    return len(runs)


def _stop_everything(instance: dg.DagsterInstance, backfill_id: str) -> tuple[int, int]:
    """Runs being created or queued canceled, started ones terminated: (canceled, terminated)."""
    unsubmitted = _cancel_unsubmitted(instance, backfill_id)
    queued, started = stop_runs(instance, backfill_id)
    return unsubmitted + queued, started


def cancel_tick(instance: dg.DagsterInstance, cursor: str | None, now: float) -> tuple[str, str]:
    """One tick's work: (what it did, the new cursor). See the module docstring."""
    watched = {backfill_id: at for backfill_id, at in _parse(cursor).items() if now - at < LATE_RUN_WATCH_SECONDS}
    done = []
    for backfill_id in list(watched):
        canceled, stopped = _stop_everything(instance, backfill_id)
        if canceled or stopped:
            done.append(f"{backfill_id} (CANCELED): {canceled} late run(s) canceled before starting, {stopped} stopped")
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.CANCELING])):
        backfill_id = backfill.backfill_id
        canceled, stopped = _stop_everything(instance, backfill_id)
        if not _has_unfinished_runs(instance, backfill_id) and _mark_canceled(instance, backfill_id):
            watched[backfill_id] = now
            done.append(f"{backfill_id}: CANCELED ({canceled} run(s) canceled before starting now)")
        else:
            done.append(f"{backfill_id}: {canceled} run(s) canceled before starting, {stopped} running run(s) told "
                        "to stop; CANCELED once its runs have ended")
    return ("; ".join(done) or "no backfill is being canceled"), json.dumps(watched, sort_keys=True)


@dg.sensor(
    name="cancel_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=CANCEL_SENSOR_SECONDS,
    description="Ends a backfill canceled in the UI within seconds: cancels its queued runs, stops its running runs "
                "at a day boundary and marks it CANCELED once they have ended (Dagster's daemon alone takes 30-90 s). "
                "Requests no runs; an idle tick is one indexed query.",
)
def cancel_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """See the module docstring: a UI cancel ends as quickly as a CLI/API cancel."""
    message, cursor = cancel_tick(context.instance, context.cursor, time.time())
    if cursor != (context.cursor or "{}"):
        context.update_cursor(cursor)
    return dg.SkipReason(message)
