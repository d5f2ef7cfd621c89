"""Launch and follow Dagster partition backfills from outside the UI (the old API and the CLI).

`launch_backfill` creates the same record the UI's "Materialize… → Launch backfill" creates: an
asset `PartitionBackfill` of `price_klines_5m` and its six rollups over (day × symbol) partitions,
written straight into the Dagster instance (`instance.add_backfill`), exactly as the GraphQL
`launchPartitionBackfill` mutation does after its permission checks. No webserver is involved,
so the API and the CLI work while the UI is down; the backfill shows up in the UI all the same
(**Runs → Backfills**, `/runs/b/<id>`).

What must be running for the backfill to EXECUTE: the Dagster daemon (its backfill daemon turns
the record into runs, its run queue launches them) on the same DAGSTER_HOME — `kline-pipeline dev`
(UI + daemon + this API), `dagster dev -w workspace.yaml`, or `dagster-daemon run -w
workspace.yaml`. Without it the backfill stays REQUESTED; nothing is lost, it starts when the
daemon does.

The backfill's asset graph is the repository's own `AssetGraph` (`kline_pipeline.repository_graph`,
built from `definitions.defs` in this process). The stored target is only asset keys and partition
subsets, so the daemon later executes it against the code location it loads from the workspace;
both load the same module.

Reads the Dagster instance (backfills, runs, materialisations); writes only new backfill records
(and, for a new symbol, its partition). Requests are checked before they get here, by
`kline_pipeline.backfill_requests` (`validate_request`, `RequestError`).
"""

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from kline_pipeline.backfill_requests import RequestError, touched_days
from kline_pipeline.bybit import BybitClient
from kline_pipeline.partitions import START_DATE, SYMBOLS_PARTITIONS_NAME, partition_key, validate_symbol
from kline_pipeline.repository_graph import asset_graph

UTC = timezone.utc
UI_URL_ENV = "KLINE_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:3001"
"""`kline-pipeline dev` serves the Dagster UI on 3001 (the old API keeps 3000)."""

SOURCE_TAG = "kline/launched_by"

# Terminal states of a backfill and which of them count as success (for `backfill --wait`).
DONE_STATUSES = frozenset({
    BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED, BulkActionStatus.CANCELED,
})
SUCCESS_STATUSES = frozenset({BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS})

# Per (partition, asset) progress states, most advanced first.
MATERIALISED, FAILED, IN_PROGRESS, REQUESTED = "materialised", "failed", "in_progress", "requested"
STATES = (MATERIALISED, FAILED, IN_PROGRESS, REQUESTED)


@dataclass(frozen=True)
class LaunchedBackfill:
    """A backfill written to the instance (the daemon runs it)."""

    backfill_id: str
    symbol: str
    partition_keys: tuple[str, ...]
    asset_keys: tuple[str, ...]
    ui_url: str
    added_symbol: bool
    reused: bool = False
    """True when an identical request's backfill was answered instead of launching a new one."""

    def to_json(self) -> dict[str, object]:
        return {
            "backfill_id": self.backfill_id, "symbol": self.symbol, "partitions": list(self.partition_keys),
            "assets": list(self.asset_keys), "ui_url": self.ui_url, "added_symbol": self.added_symbol,
            "reused": self.reused,
        }


def backfill_asset_keys() -> tuple[dg.AssetKey, ...]:
    """The raw asset and the six rollups, upstream first."""
    from kline_pipeline.assets import price_klines_5m
    from kline_pipeline.rollups import rollup_assets

    return (price_klines_5m.key, *(asset.key for asset in rollup_assets))


def ui_base_url() -> str:
    return (os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL).rstrip("/")


def backfill_ui_url(backfill_id: str, *, base: str | None = None) -> str:
    """Where the Dagster UI (1.13: route `/runs/b/<id>`) shows this backfill."""
    return f"{(base or ui_base_url()).rstrip('/')}/runs/b/{backfill_id}"


def launch_backfill(
    instance: dg.DagsterInstance, *, symbol: str, start: datetime, end: datetime, now: datetime,
    bybit: BybitClient | None = None, launched_by: str = "api", ui_url: str | None = None,
    tags: Mapping[str, str] | None = None, only_days: Sequence[date] | None = None,
) -> LaunchedBackfill:
    """Add `symbol` as a partition if new, then write a partition backfill of the raw asset and
    the six rollups over every day of [start, end) (see `touched_days`) for that symbol — or only
    over `only_days` of them (`backfill --missing`: the days the gap report finds holes in).

    Expects a request already checked by `validate_request` (the symbol is checked again here:
    a malformed one would become a partition key Dagster cannot split). `tags` are added to the
    backfill's. The daemon executes the backfill (see the module docstring); this returns at once.
    """
    try:
        validate_symbol(symbol)
    except ValueError as exc:
        raise RequestError("symbol", str(exc)) from None
    days = touched_days(start, end, now=now)
    if not days:
        raise RequestError("start", f"the range has no day within the date partitions ({START_DATE} "
                           f"to today, KLINE_START_DATE)")
    if only_days is not None:
        days = sorted(set(days) & set(only_days))
        if not days:
            raise RequestError("start", "none of the requested days lies within the range")
    added = False
    if symbol not in instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME):
        from kline_pipeline.symbols import add_symbols  # checks the exchange lists it, then adds

        added = bool(add_symbols(instance, bybit or BybitClient(), [symbol]))
    keys = [partition_key(day, symbol) for day in days]
    assets = backfill_asset_keys()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=asset_graph(),
        partition_names=keys,
        asset_selection=list(assets),
        # The record's time is the real wall clock (the UI sorts by it), whatever `now` says.
        backfill_timestamp=time.time(),
        tags={**(tags or {}), SOURCE_TAG: launched_by},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"{symbol} {days[0].isoformat()} to {days[-1].isoformat()}"
        + ("" if only_days is None else f" ({len(days)} days with missing candles)"),
        description=f"{symbol} [{start.isoformat()}, {end.isoformat()}) launched by kline-pipeline ({launched_by})",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return LaunchedBackfill(
        backfill_id=backfill.backfill_id, symbol=symbol, partition_keys=tuple(keys),
        asset_keys=tuple(key.to_user_string() for key in assets),
        ui_url=backfill_ui_url(backfill.backfill_id, base=ui_url), added_symbol=added,
    )


def _pairs(subset: AssetGraphSubset) -> set[tuple[str, str]]:
    """(asset, partition) pairs of an AssetGraphSubset."""
    # A backfill's assets are all partitioned: no partition key here is None (Dagster's type allows it).
    return {(ap.asset_key.to_user_string(), ap.partition_key)  # type: ignore[misc]
            for ap in subset.iterate_asset_partitions()}


def _materialised_since(instance: dg.DagsterInstance, targets: Mapping[str, list[str]], after: float) -> set[tuple[str, str]]:
    """(asset, partition) pairs of `targets` materialised after `after` (any run).

    The daemon updates the backfill's own bookkeeping only once per loop (30 s); the event log
    shows progress as soon as a run writes it.
    """
    done: set[tuple[str, str]] = set()
    for asset, partitions in targets.items():
        cursor = None
        while True:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_user_string(asset),
                                      asset_partitions=partitions, after_timestamp=after),
                limit=1000, cursor=cursor,
            )
            done.update((asset, r.partition_key) for r in result.records if r.partition_key)
            if not result.has_more:
                break
            cursor = result.cursor
    return done


def _run_counts(instance: dg.DagsterInstance, backfill_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in instance.get_run_records(filters=dg.RunsFilter.for_backfill(backfill_id)):
        status = record.dagster_run.status.value.lower()
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def backfill_status(instance: dg.DagsterInstance, backfill_id: str) -> dict[str, Any]:
    """Status and per-partition progress of a backfill, as JSON-ready data.

    Each (partition, asset) is `materialised`, `failed` (or skipped because upstream failed),
    `in_progress` (its run was launched and has not finished) or `requested` (in the backfill,
    not launched yet). Raises KeyError for an unknown id.
    """
    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise KeyError(backfill_id)
    data = backfill.get_asset_backfill_data(asset_graph())
    target = _pairs(data.target_subset)
    partitions: dict[str, dict[str, str]] = {}
    for asset, key in target:
        partitions.setdefault(key, {})[asset] = REQUESTED
    by_asset: dict[str, list[str]] = {}
    for asset, key in target:
        by_asset.setdefault(asset, []).append(key)
    materialised = _pairs(data.materialized_subset) | _materialised_since(instance, by_asset, backfill.backfill_timestamp)
    failed = _pairs(data.failed_and_downstream_subset) - materialised
    launched = _pairs(data.requested_subset)
    for asset, key in target:
        if (asset, key) in materialised:
            state = MATERIALISED
        elif (asset, key) in failed:
            state = FAILED
        elif (asset, key) in launched:
            state = IN_PROGRESS
        else:
            state = REQUESTED
        partitions[key][asset] = state
    rows = [_partition_row(key, states) for key, states in sorted(partitions.items())]
    counts = {state: sum(1 for p in partitions.values() for s in p.values() if s == state) for state in STATES}
    status = backfill.status
    return {
        "backfill_id": backfill.backfill_id,
        "status": status.value,
        "done": status in DONE_STATUSES,
        "succeeded": status in SUCCESS_STATUSES,
        "title": backfill.title,
        "created": datetime.fromtimestamp(backfill.backfill_timestamp, tz=UTC).isoformat(),
        "assets": sorted({asset for asset, _ in target}),
        "counts": {**counts, "total": len(target)},
        "runs": _run_counts(instance, backfill_id),
        "partitions": rows,
        "ui_url": backfill_ui_url(backfill.backfill_id),
    }


def _partition_row(key: str, states: Mapping[str, str]) -> dict[str, object]:
    values = list(states.values())
    if FAILED in values:
        overall = FAILED
    elif all(v == MATERIALISED for v in values):
        overall = MATERIALISED
    elif any(v in (MATERIALISED, IN_PROGRESS) for v in values):
        overall = IN_PROGRESS
    else:
        overall = REQUESTED
    return {
        "partition": key, "state": overall, "assets": len(values),
        **{state: values.count(state) for state in STATES},
        "by_asset": dict(sorted(states.items())),
    }


def progress_lines(status: Mapping[str, Any], *, width: int = 10) -> list[str]:
    """One text line per partition, e.g. `2025-01-03|BTCUSDT  [#####.....] materialised 4/7 assets`."""
    lines = []
    for row in status["partitions"]:
        total, done = row["assets"], row[MATERIALISED]
        filled = round(width * done / total) if total else width
        extra = "".join(f", {row[s]} {s.replace('_', ' ')}" for s in (FAILED, IN_PROGRESS) if row[s])
        lines.append(f"{row['partition']}  [{'#' * filled}{'.' * (width - filled)}] materialised {done}/{total} assets{extra}")
    return lines


def summary_line(status: Mapping[str, Any]) -> str:
    counts: Mapping[str, int] = status["counts"]
    return (f"backfill {status['backfill_id']}: {status['status']} — {counts[MATERIALISED]}/{counts['total']} "
            f"asset partitions materialised, {counts[FAILED]} failed, {counts[IN_PROGRESS]} in progress, "
            f"{counts[REQUESTED]} waiting")
