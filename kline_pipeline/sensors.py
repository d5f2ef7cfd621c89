"""Automation: the rollups follow every raw update, by any means, batched per symbol and range.

Why this shape scales: the sensor reads the event log FORWARD from a cursor (the storage id of
the last raw materialization it judged), so a tick costs one indexed query plus work in
proportion to the raw materializations that are new since the previous tick, whatever the
number of symbols and days. Dagster's AutomationCondition sensor instead evaluated the rollups'
condition over every (day, symbol) partition each tick (measured on 1.13.27: 15-24 s per tick at
150 symbols, 250-290 MB of evaluation data stored per tick at 50) — cost of the partition space.
What a tick stores is its cursor (a storage id and the ids of runs still in progress) and its
run requests: nothing grows with the partition count.

Rules:
- A raw materialization is judged once its run has ended (so a backfill run that also refreshes
  the rollups, or a live tick that logs them after the raw days, is not duplicated mid-run).
- Its (day, symbol) needs a refresh of every rollup whose latest materialization of that
  partition is older than it (storage ids are the event log's order). Any way of materializing
  raw days — UI, API, CLI, schedule, a single Materialize, a failed run — is covered alike.
- Requests are one run per symbol and contiguous range of up to PARTITIONS_PER_RUN days (the
  rollups' backfill layout), each refreshing only the rollups that are stale there.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from kline_pipeline.assets import PARTITIONS_PER_RUN, price_klines_5m
from kline_pipeline.partitions import contiguous_runs, partition_key, split_partition_key
from kline_pipeline.rollups import rollup_assets

RAW = price_klines_5m.key
ROLLUP_KEYS = tuple(asset.key for asset in rollup_assets)
PAGE = 5000
"""Raw materializations judged per tick at most (a backlog is worked off over several ticks)."""


@dataclass(frozen=True)
class RollupCursor:
    """Where the sensor is in the event log."""

    after: int = 0
    """Every raw materialization with a storage id up to this one has been read."""
    waiting: tuple[str, ...] = field(default_factory=tuple)
    """Runs that had materialized raw days but had not ended; judged when they end."""

    @classmethod
    def parse(cls, text: str | None) -> "RollupCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(after=int(data["after"]), waiting=tuple(data.get("waiting", ())))

    def dumps(self) -> str:
        return json.dumps({"after": self.after, "waiting": sorted(self.waiting)})


def _raw_records_of_runs(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> list[dg.EventLogRecord]:
    records = []
    for run_id in run_ids:
        connection = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        records += [r for r in connection.records if r.asset_key == RAW]
    return records


def stale_rollups(instance: dg.DagsterInstance, raw_ids: dict[str, int]) -> dict[str, frozenset[dg.AssetKey]]:
    """For each partition (-> its raw storage id), the rollups last materialized before that raw event."""
    stale: dict[str, set[dg.AssetKey]] = defaultdict(set)
    for key in ROLLUP_KEYS:
        latest = instance.event_log_storage.get_latest_storage_id_by_partition(
            key, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(raw_ids))
        for partition, raw_id in raw_ids.items():
            if latest.get(partition, 0) < raw_id:
                stale[partition].add(key)
    return {partition: frozenset(keys) for partition, keys in stale.items()}


def run_requests(stale: dict[str, frozenset[dg.AssetKey]], *, tick_id: int) -> list[dg.RunRequest]:
    """One run per symbol, set of stale rollups and contiguous range of up to PARTITIONS_PER_RUN days."""
    grouped: dict[tuple[str, frozenset[dg.AssetKey]], list] = defaultdict(list)
    for key, assets in stale.items():
        try:
            day, symbol = split_partition_key(key)
        except ValueError:
            continue  # a malformed key added by hand never has rollups to refresh
        grouped[(symbol, assets)].append(day)
    requests = []
    for (symbol, assets), days in sorted(grouped.items(), key=lambda item: (item[0][0], sorted(map(str, item[0][1])))):
        for run in contiguous_runs(sorted(days)):
            for i in range(0, len(run), PARTITIONS_PER_RUN):
                chunk = run[i:i + PARTITIONS_PER_RUN]
                first, last = partition_key(chunk[0], symbol), partition_key(chunk[-1], symbol)
                requests.append(dg.RunRequest(
                    run_key=f"rollups:{first}:{last}:{','.join(sorted(a.path[-1] for a in assets))}:{tick_id}",
                    asset_selection=sorted(assets, key=lambda a: a.path[-1]),
                    tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last,
                          "kline/triggered_by": "rollup_refresh_sensor"},
                ))
    return requests


def evaluate_tick(instance: dg.DagsterInstance, cursor: RollupCursor) -> tuple[list[dg.RunRequest], RollupCursor]:
    """One tick: the run requests for raw changes since `cursor`, and the new cursor."""
    page = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW, after_storage_id=cursor.after), limit=PAGE, ascending=True).records
    run_ids = {r.run_id for r in page if r.run_id} | set(cursor.waiting)
    runs = {run.run_id: run for run in instance.get_runs(dg.RunsFilter(run_ids=sorted(run_ids)))} if run_ids else {}
    # A run deleted from the instance counts as ended: nothing will add to it.
    ended = {run_id for run_id in run_ids if run_id not in runs or runs[run_id].is_finished}
    waiting = {r.run_id for r in page if r.run_id and r.run_id not in ended} | (set(cursor.waiting) - ended)
    judged = [r for r in page if not r.run_id or (r.run_id in ended and r.run_id not in cursor.waiting)]
    judged += _raw_records_of_runs(instance, sorted(set(cursor.waiting) & ended))
    raw_ids: dict[str, int] = {}
    for record in judged:
        if record.partition_key:
            raw_ids[record.partition_key] = max(raw_ids.get(record.partition_key, 0), record.storage_id)
    stale = stale_rollups(instance, raw_ids) if raw_ids else {}
    after = page[-1].storage_id if page else cursor.after
    return run_requests(stale, tick_id=after), RollupCursor(after=after, waiting=tuple(sorted(waiting)))


@dg.sensor(
    name="rollup_refresh_sensor",
    target=dg.AssetSelection.assets(*ROLLUP_KEYS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes the rollups of every price_klines_5m partition that was materialised, however old: "
    "reads new raw materializations from a cursor and requests one run per symbol and range.",
)
def rollup_refresh_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    requests, cursor = evaluate_tick(context.instance, RollupCursor.parse(context.cursor))
    return dg.SensorResult(run_requests=requests, cursor=cursor.dumps())


def requested_partitions(requests: Sequence[dg.RunRequest]) -> list[tuple[str, str]]:
    """(first, last) partition of each request: what a tick asked for, for logs and tests."""
    return [(r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG]) for r in requests]
