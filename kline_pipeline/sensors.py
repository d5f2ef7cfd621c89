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
- Hand corrections (UPDATE/DELETE/INSERT on price_klines by SQL, outside the pipeline) are
  recorded per (symbol, day) by a statement-level trigger; each tick takes them
  (`kline_pipeline.hand_changes`) and requests all six rollups of exactly those days.
"""

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg
import sqlalchemy as sa
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from kline_pipeline import clock
from kline_pipeline.assets import PARTITIONS_PER_RUN, price_klines_5m
from kline_pipeline.hand_changes import new_claim, partitions_to_refresh, take_hand_changes
from kline_pipeline.partitions import SYMBOLS_PARTITIONS_NAME, contiguous_runs, partition_key, split_partition_key
from kline_pipeline.rollups import rollup_assets
from kline_pipeline.store import KlineStore, redact_url

RAW = price_klines_5m.key
ROLLUP_KEYS = tuple(asset.key for asset in rollup_assets)
PAGE = 5000
"""Raw materializations judged per tick at most (a backlog is worked off over several ticks)."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollupCursor:
    """Where the sensor is in the event log."""

    after: int = 0
    """Every raw materialization with a storage id up to this one has been read."""
    waiting: tuple[str, ...] = field(default_factory=tuple)
    """Runs that had materialized raw days but had not ended; judged when they end."""
    claim: str | None = None
    """The claim token of the hand-changed pairs this tick took (forgotten by the next tick)."""

    @classmethod
    def parse(cls, text: str | None) -> "RollupCursor":
        """The cursor a previous tick stored. A missing or foreign one (the AutomationCondition sensor
        this one replaced stored its own under the same name) starts from the beginning of the event
        log: every raw materialization is judged once, and only stale rollups are requested."""
        try:
            data = json.loads(text or "{}")
            claim = data.get("claim")
            return cls(after=int(data["after"]), waiting=tuple(str(r) for r in data.get("waiting", ())),
                       claim=str(claim) if claim else None)
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()

    def dumps(self) -> str:
        return json.dumps({"after": self.after, "waiting": sorted(self.waiting), "claim": self.claim})


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


def run_requests(stale: dict[str, frozenset[dg.AssetKey]], *, unique: int | str) -> list[dg.RunRequest]:
    """One run per symbol, set of stale rollups and contiguous range of up to PARTITIONS_PER_RUN days.
    `unique` (the cursor's storage id, and the tick's claim when it took hand changes) makes the
    run keys differ from any earlier tick's."""
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
                    run_key=f"rollups:{first}:{last}:{','.join(sorted(a.path[-1] for a in assets))}:{unique}",
                    asset_selection=sorted(assets, key=lambda a: a.path[-1]),
                    tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last,
                          "kline/triggered_by": "rollup_refresh_sensor"},
                ))
    return requests


def evaluate_tick(instance: dg.DagsterInstance, cursor: RollupCursor,
                  store: KlineStore | None = None) -> tuple[list[dg.RunRequest], RollupCursor]:
    """One tick: the run requests for raw changes since `cursor` (and, given the candle `store`,
    for the hand-changed days it records), and the new cursor."""
    page = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW, after_storage_id=cursor.after), limit=PAGE, ascending=True).records
    run_ids = {r.run_id for r in page if r.run_id} | set(cursor.waiting)
    runs = {run.run_id: run for run in instance.get_runs(dg.RunsFilter(run_ids=sorted(run_ids)))} if run_ids else {}
    # A run deleted from the instance counts as ended: nothing will add to it.
    ended = {run_id for run_id in run_ids if run_id not in runs or runs[run_id].is_finished}
    waiting = {r.run_id for r in page if r.run_id and r.run_id not in ended} | (set(cursor.waiting) - ended)
    after = page[-1].storage_id if page else cursor.after
    judged = [r for r in page if not r.run_id or (r.run_id in ended and r.run_id not in cursor.waiting)]
    # A run that was waiting is judged whole now, up to this page's end (later pages judge the rest).
    judged += [r for r in _raw_records_of_runs(instance, sorted(set(cursor.waiting) & ended)) if r.storage_id <= after]
    raw_ids: dict[str, int] = {}
    for record in judged:
        if record.partition_key:
            raw_ids[record.partition_key] = max(raw_ids.get(record.partition_key, 0), record.storage_id)
    stale = stale_rollups(instance, raw_ids) if raw_ids else {}
    claim, unique = cursor.claim, str(after)
    if store is not None:
        claim = new_claim()
        try:
            pairs = take_hand_changes(store, done_claim=cursor.claim, claim=claim)
        except (ConnectionError, sa.exc.OperationalError) as exc:
            # The candle database is away: the raw materializations still get their rollups; the
            # hand-changed pairs stay recorded (nothing was taken) for a later tick.
            log.warning("hand-changed days not read this tick: %s", redact_url(str(exc).splitlines()[0]))
            return (run_requests(stale, unique=unique),
                    RollupCursor(after=after, waiting=tuple(sorted(waiting)), claim=cursor.claim))
        registered = instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME)
        for key in partitions_to_refresh(pairs, registered=registered, today=clock.utcnow().date()):
            stale[key] = frozenset(ROLLUP_KEYS)  # a hand change can touch any rollup of the day
        unique = f"{after}:{claim}" if pairs else unique
        claim = claim if pairs else None
    return (run_requests(stale, unique=unique),
            RollupCursor(after=after, waiting=tuple(sorted(waiting)), claim=claim))


@dg.sensor(
    name="rollup_refresh_sensor",
    target=dg.AssetSelection.assets(*ROLLUP_KEYS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes the rollups of every price_klines_5m partition that was materialised, however old, "
    "and of every day whose candles were changed by hand (SQL on price_klines): reads new raw materializations "
    "from a cursor and the hand-changed days from price_kline_hand_changes, and requests one run per symbol and range.",
)
def rollup_refresh_sensor(context: dg.SensorEvaluationContext, kline_store: KlineStore) -> dg.SensorResult:
    requests, cursor = evaluate_tick(context.instance, RollupCursor.parse(context.cursor), kline_store)
    return dg.SensorResult(run_requests=requests, cursor=cursor.dumps())


def requested_partitions(requests: Sequence[dg.RunRequest]) -> list[tuple[str, str]]:
    """(first, last) partition of each request: what a tick asked for, for logs and tests."""
    return [(r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG]) for r in requests]
