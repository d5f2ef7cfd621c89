"""The checks as Dagster sees them: specs, the two check steps, and how results are recorded.

Every result is recorded per partition as an `AssetCheckEvaluation` that names the partition AND
the materialization it judged (`target_materialization_data`: that partition's latest
materialization). Dagster counts a partition's check result as current only while that pointer
equals the partition's latest materialization (`AssetCheckPartitionInfo.is_current`, dagster
1.13.27), which is what the check's Partitions tab and `AssetCheck.partitionStatuses` show. A
plain `AssetCheckResult` cannot do this: in a run of a partition range (every backfill run, even
of one day) Dagster records it with partition=None, and the days show as Skipped or Missing. So
the check steps record one evaluation per (check, partition) themselves and yield no results
(the specs are subsettable, so no result is required); re-materializing a day makes its old
results stale, as Dagster intends.
"""

import os
from collections.abc import Iterator, Mapping, Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import DagsterEventType

from kline_pipeline import clock
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient
from kline_pipeline.checks.facts import Facts
from kline_pipeline.event_writes import log_check_evaluations
from kline_pipeline.checks.rules import (
    Evaluator,
    Outcome,
    candles_fresh,
    no_missing_candles,
    rollup_exact_and_complete,
    valid_ohlcv,
    with_exchange_comparison,
)
from kline_pipeline.partitions import kline_partitions
from kline_pipeline.rollups import ROLLUPS, rollup_assets
from kline_pipeline.store import KlineStore

EXCHANGE_COMPARISON_ENV = "KLINE_CHECK_ROLLUPS_AGAINST_EXCHANGE"
"""Set to 1 to also compare each rollup day with Bybit's own candles (one request per rollup per day)."""

Outcomes = Mapping[dg.AssetCheckKey, Mapping[str, Outcome]]
MutableOutcomes = dict[dg.AssetCheckKey, dict[str, Outcome]]


def _spec(asset: dg.AssetsDefinition, name: str, evaluator: Evaluator) -> tuple[dg.AssetCheckSpec, Evaluator]:
    spec = dg.AssetCheckSpec(name, asset=asset, partitions_def=kline_partitions, description=evaluator.__doc__)
    return spec, evaluator


_RAW = [_spec(price_klines_5m, f.__name__, f) for f in (no_missing_candles, valid_ohlcv, candles_fresh)]
# One check per rollup (not one per condition): every result of every partition is an event write.
_ROLLUP = [_spec(asset, "exact_and_complete", rollup_exact_and_complete(rollup))
           for rollup, asset in zip(ROLLUPS, rollup_assets, strict=True)]

EVALUATORS: dict[dg.AssetCheckKey, Evaluator] = {spec.key: f for spec, f in _RAW + _ROLLUP}
RAW_CHECK_KEYS = [spec.key for spec, _ in _RAW]
FRESHNESS_CHECK_KEY = dg.AssetCheckKey(price_klines_5m.key, candles_fresh.__name__)
ROLLUP_CHECK_KEYS = {rollup.table: [spec.key for spec, _ in _ROLLUP if spec.asset_key.path[-1] == rollup.table]
                     for rollup in ROLLUPS}


def target_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Sequence[str],
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest materialization of each of `partitions` (two indexed queries, whatever their number)."""
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(partitions))
    if not latest:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(latest.values())), limit=len(latest)).records
    return {r.partition_key: AssetCheckEvaluationTargetMaterializationData(
        storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp) for r in records if r.partition_key}


def evaluation_events(instance: dg.DagsterInstance, outcomes: Outcomes) -> list[dg.AssetCheckEvaluation]:
    """One `AssetCheckEvaluation` per (check, partition), each pointing at the materialization it judged."""
    events = []
    targets: dict[dg.AssetKey, dict[str, AssetCheckEvaluationTargetMaterializationData]] = {}
    for check_key, by_partition in outcomes.items():
        if check_key.asset_key not in targets:
            partitions = sorted({p for k, o in outcomes.items() if k.asset_key == check_key.asset_key for p in o})
            targets[check_key.asset_key] = target_materializations(instance, check_key.asset_key, partitions)
        for partition, outcome in by_partition.items():
            events.append(dg.AssetCheckEvaluation(
                asset_key=check_key.asset_key, check_name=check_key.name, passed=outcome.passed,
                severity=outcome.severity, metadata=outcome.metadata, partition=partition,
                target_materialization_data=targets[check_key.asset_key].get(partition)))
    return events


def log_evaluation(context: dg.OpExecutionContext, event: dg.AssetCheckEvaluation) -> None:
    """`context.log_event(event)` for a check evaluation outside a check step (one result per partition).

    Dagster 1.13 logs it (`log_event` has a branch for AssetCheckEvaluation), though the method's
    annotation names only materializations, observations and expectation results.
    """
    context.log_event(event)  # type: ignore[arg-type]


def evaluate(check_keys: Sequence[dg.AssetCheckKey], partitions: Sequence[str], facts: Facts,
             evaluators: Mapping[dg.AssetCheckKey, Evaluator] | None = None) -> MutableOutcomes:
    """Every check of `check_keys` on every partition, from one shared set of facts."""
    table = evaluators or EVALUATORS
    return {check_key: {key: table[check_key](facts, key) for key in partitions} for check_key in check_keys}


def record_partition_results(
    context: dg.AssetCheckExecutionContext, store: KlineStore,
    evaluators: Mapping[dg.AssetCheckKey, Evaluator] | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the selected checks on each partition of the run and record each result (module docstring)."""
    op_context = context.op_execution_context
    keys = list(op_context.partition_keys)
    facts = Facts(store, keys, clock.utcnow())  # shared by every check of this step
    outcomes = evaluate(sorted(context.selected_asset_check_keys, key=str), keys, facts, evaluators)
    log_check_evaluations(op_context, evaluation_events(op_context.instance, outcomes))
    failed = sorted({k for by_key in outcomes.values() for k, o in by_key.items() if not o.passed})
    op_context.log.info(f"{sum(map(len, outcomes.values()))} check results on {len(keys)} partitions; "
                        f"partitions with a failed check: {', '.join(failed[:20]) or 'none'}")
    yield from ()


@dg.multi_asset_check(specs=[spec for spec, _ in _RAW], can_subset=True, name="price_klines_5m_checks")
def raw_checks(context: dg.AssetCheckExecutionContext, kline_store: KlineStore) -> Iterator[dg.AssetCheckResult]:
    """Completeness, validity and freshness of the stored 5m candles, per partition (reads only)."""
    yield from record_partition_results(context, kline_store)


@dg.multi_asset_check(specs=[spec for spec, _ in _ROLLUP], can_subset=True, name="rollup_checks")
def rollup_checks(
    context: dg.AssetCheckExecutionContext, kline_store: KlineStore, bybit: BybitClient
) -> Iterator[dg.AssetCheckResult]:
    """Each rollup equals a recomputation from the 5m candles and its short buckets are explained;
    with KLINE_CHECK_ROLLUPS_AGAINST_EXCHANGE=1 (off by default, it costs requests) it also equals
    Bybit's own candles of that interval."""
    evaluators = None
    if os.environ.get(EXCHANGE_COMPARISON_ENV) == "1":
        evaluators = {spec.key: with_exchange_comparison(rollup, f, bybit)
                      for (spec, f), rollup in zip(_ROLLUP, ROLLUPS, strict=True)}
    yield from record_partition_results(context, kline_store, evaluators)
