"""Cancel a backfill so that it stops: no new runs, in-flight runs ended, CANCELED soon after.

What the UI's Cancel does is only to mark the backfill CANCELING; Dagster's backfill daemon does
the rest on its 30-second loop: it cancels the backfill's queued runs, terminates its started
runs and marks it CANCELED once none is left. Measured under `dagster dev` (a 1,832-partition
backfill with its rollups, 20 runs of 92 days) that did not happen for 10 minutes: the daemon's
worker thread for a backfill submits ALL of an iteration's runs (about 18 s each on 2 cores)
and looks at the backfill's status only every `DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE` (default
25) runs; while that thread runs, the daemon starts no cancel iteration for the backfill, so
the CANCELING backfill kept queueing runs and the queue kept launching them.

Four parts fix it:

- `DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE=1` (`kline_pipeline.instance.env`) in the daemon's
  environment: the submitting thread then stops after the run it is creating, and the next loop
  cancels and terminates. `kline-pipeline dev`
  sets it; the Helm values set it for the daemon pod; README says how for `dagster dev` and
  `dagster-daemon run`.
- The raw asset fails, not retries, when its run is terminated (`kline_pipeline.assets`): Dagster
  turns an interrupt into a retry under a RetryPolicy, and the retry fetched the whole range.
- `cancel_backfill` (the CLI's `backfill --cancel` and the API's DELETE) marks the backfill
  CANCELING and at once does what the daemon would do a loop later, with the daemon's own
  function: queued runs are canceled, started runs terminated. A terminated run stops where it
  is; every day it wrote is committed whole (`DayWriter.write_day` is one transaction per day),
  the day in progress is rolled back. `sweep_until_canceled` repeats that until the daemon has
  marked the backfill CANCELED, catching a run the daemon created while being told to stop.
- `cancel_sensor` (`kline_pipeline.cancel_sensor`, running by default, a tick every 5 s) does the
  same for every CANCELING backfill, whoever canceled it, and marks it CANCELED as soon as its
  runs have ended, without waiting for the daemon's loop. Measured with bench/bench_cancel.py
  (UI's cancel mutation on a six-run backfill with all runs created, runs fetching, `dagster dev`
  on two cores shared with other work, load average 3-14): the daemon alone 37.8 / 64.7 / 86.1 s
  (min / median / max of 5 trials; three of five over a minute); with the sensor 5.4 / 9.2 /
  22.3 s (6 trials), no run created after the cancel, only whole days stored. What is left is
  a run the queue had launched but that had not started yet (10-20 s here): it is stopped once
  started.

Safe to repeat: cancelling a canceled (or finished) backfill changes nothing and says so.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, cancel_backfill_runs_and_cancellation_complete
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG

# A backfill in one of these states has nothing left to cancel.
TERMINAL = frozenset({
    BulkActionStatus.CANCELED, BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED,
})

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CancelResult:
    """What one cancel request did."""

    backfill_id: str
    status: str
    """The backfill's status afterwards (CANCELING until the daemon's next loop, then CANCELED)."""
    queued_runs_canceled: int
    runs_terminated: int
    already_finished: bool
    """True if the backfill had already ended (nothing was changed)."""

    def to_json(self) -> dict[str, object]:
        return {
            "backfill_id": self.backfill_id, "status": self.status,
            "queued_runs_canceled": self.queued_runs_canceled, "runs_terminated": self.runs_terminated,
            "already_finished": self.already_finished,
        }

    def summary(self) -> str:
        if self.already_finished:
            return f"backfill {self.backfill_id} had already ended ({self.status}); nothing to cancel"
        return (f"backfill {self.backfill_id}: {self.status}; {self.queued_runs_canceled} queued run(s) canceled, "
                f"{self.runs_terminated} running run(s) told to stop (each keeps the whole days it wrote)")


def _count(instance: dg.DagsterInstance, backfill_id: str, status: DagsterRunStatus) -> int:
    return instance.get_runs_count(dg.RunsFilter(statuses=[status], tags={BACKFILL_ID_TAG: backfill_id}))


def stop_runs(instance: dg.DagsterInstance, backfill_id: str) -> tuple[int, int]:
    """Cancel the backfill's queued runs and terminate its started ones; (queued, started) counts.

    Uses Dagster's own routine (the one its daemon runs for a CANCELING backfill), so a run is
    stopped exactly as the daemon would stop it.
    """
    queued = _count(instance, backfill_id, DagsterRunStatus.QUEUED)
    started = _count(instance, backfill_id, DagsterRunStatus.STARTED)
    if queued or started:
        cancel_backfill_runs_and_cancellation_complete(instance=instance, backfill_id=backfill_id, logger=_log)
    return queued, started


def cancel_backfill(instance: dg.DagsterInstance, backfill_id: str) -> CancelResult:
    """Mark the backfill CANCELING (as the UI's Cancel does), then stop its runs at once.

    Raises KeyError for an unknown id. Reads and writes only the Dagster instance.
    """
    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise KeyError(backfill_id)
    if backfill.status in TERMINAL:
        return CancelResult(backfill_id, backfill.status.value, 0, 0, already_finished=True)
    _mark_canceling(instance, backfill_id)
    queued, started = stop_runs(instance, backfill_id)
    # The daemon writes the backfill after each run it submits, from a copy it read just before;
    # a cancel landing in between would be overwritten with REQUESTED. Check, and mark again.
    _mark_canceling(instance, backfill_id)
    status = instance.get_backfill(backfill_id).status.value  # type: ignore[union-attr]
    return CancelResult(backfill_id, status, queued, started, already_finished=False)


def _mark_canceling(instance: dg.DagsterInstance, backfill_id: str) -> None:
    backfill = instance.get_backfill(backfill_id)
    if backfill is not None and backfill.status == BulkActionStatus.REQUESTED:
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))


def sweep_until_canceled(
    instance: dg.DagsterInstance, backfill_id: str, *, timeout_seconds: float = 300.0, poll_seconds: float = 0.5,
    on_poll: Callable[[str], None] | None = None,
) -> str:
    """Keep stopping the backfill's runs until the daemon has marked it ended; its final status.

    A run the daemon was creating when the cancel came is queued after the first sweep: it is
    canceled here within `poll_seconds`, before the queue (1 s interval) gets far with it.
    Returns the last status seen if `timeout_seconds` pass first (the daemon may not be running).
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        backfill = instance.get_backfill(backfill_id)
        if backfill is None or backfill.status in TERMINAL:
            return backfill.status.value if backfill else "UNKNOWN"
        if backfill.status == BulkActionStatus.REQUESTED:  # overwritten by a submitting daemon thread
            _mark_canceling(instance, backfill_id)
        stop_runs(instance, backfill_id)
        if on_poll is not None:
            on_poll(backfill.status.value)
        if time.monotonic() >= deadline:
            return backfill.status.value
        time.sleep(poll_seconds)

