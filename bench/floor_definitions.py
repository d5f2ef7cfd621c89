"""The Dagster floors for bench_dagster.py: our asset graph's shape with no work in it.

Two no-op copies of our graph, with the same partitions definition (`kline_partitions`,
dynamic dimension "symbols"), backfill policy (`multi_run(PARTITIONS_PER_RUN)`), pool and executor:

- `floor_*`: the seven assets AND the same per-partition checks as ours (three on the raw
  asset, one per rollup), each recording a passing result for every partition of its run
  through `record_partition_results`, exactly as our checks do (pointing at the partition's
  materialization), but without reading anything. This is "the same backfill" as ours with no
  work in it: what Dagster itself costs for the layout, including the per-partition check
  results (one event write each). Ours minus this is our code.
- `bare_*`: the seven assets only, no checks: what the layout costs without check results.

Keys are prefixed so this code location can sit next to the real one in the same workspace.
"""

import dagster as dg

from kline_pipeline.assets import PARTITIONS_PER_RUN
from kline_pipeline.checks import Outcome
from kline_pipeline.checks.specs import record_partition_results
from kline_pipeline.partitions import kline_partitions
from kline_pipeline.rollups import ROLLUPS

POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN)
RAW_CHECKS = ("no_missing_candles", "valid_ohlcv", "candles_fresh")
ROLLUP_CHECK = "exact_and_complete"


def _passed(facts: object, key: str) -> Outcome:
    return Outcome(passed=True)


def _graph(prefix: str, *, with_checks: bool) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    @dg.asset(name=f"{prefix}_price_klines_5m", partitions_def=kline_partitions, backfill_policy=POLICY,
              pool="bybit_api", group_name=prefix)
    def raw(context) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})

    def rollup(table: str) -> dg.AssetsDefinition:
        @dg.asset(name=f"{prefix}_{table}", deps=[raw], partitions_def=kline_partitions, backfill_policy=POLICY,
                  group_name=prefix)
        def _rollup(context) -> dg.MaterializeResult:
            return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})

        return _rollup

    assets = [raw, *[rollup(r.table) for r in ROLLUPS]]
    if not with_checks:
        return assets, []
    raw_specs = [dg.AssetCheckSpec(name, asset=raw, partitions_def=kline_partitions) for name in RAW_CHECKS]
    rollup_specs = [dg.AssetCheckSpec(ROLLUP_CHECK, asset=a, partitions_def=kline_partitions) for a in assets[1:]]

    def checks(name: str, specs: list[dg.AssetCheckSpec]) -> dg.AssetChecksDefinition:
        @dg.multi_asset_check(specs=specs, can_subset=True, name=f"{prefix}_{name}")
        def _checks(context: dg.AssetCheckExecutionContext):
            yield from record_partition_results(context, None, {s.key: _passed for s in specs})

        return _checks

    return assets, [checks("price_klines_5m_checks", raw_specs), checks("rollup_checks", rollup_specs)]


FLOOR_ASSETS, FLOOR_CHECKS = _graph("floor", with_checks=True)
BARE_ASSETS, _ = _graph("bare", with_checks=False)

defs = dg.Definitions(assets=[*FLOOR_ASSETS, *BARE_ASSETS], asset_checks=FLOOR_CHECKS, executor=dg.in_process_executor)
