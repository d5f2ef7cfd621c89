"""The Dagster floor for bench_dagster.py: our asset graph's shape with no work in it.

A `price_klines_5m`-shaped asset and six rollups that do nothing, with the same partitions
definition (`kline_partitions`, dynamic dimension "symbols"), the same backfill policy
(`multi_run(31)`), pool and executor, and no checks. Keys are prefixed `floor_` so this code
location can sit next to the real one in the same workspace. What a backfill of this costs is
what Dagster itself costs for the layout; ours minus this is our code.
"""

import dagster as dg

from kline_pipeline.assets import PARTITIONS_PER_RUN
from kline_pipeline.partitions import kline_partitions
from kline_pipeline.rollups import ROLLUPS

POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN)


@dg.asset(name="floor_price_klines_5m", partitions_def=kline_partitions, backfill_policy=POLICY, pool="bybit_api",
          group_name="floor")
def floor_price_klines_5m(context) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})


def _floor_rollup(table: str) -> dg.AssetsDefinition:
    @dg.asset(name=f"floor_{table}", deps=[floor_price_klines_5m], partitions_def=kline_partitions,
              backfill_policy=POLICY, group_name="floor")
    def _rollup(context) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})

    return _rollup


FLOOR_ASSETS = [floor_price_klines_5m, *[_floor_rollup(r.table) for r in ROLLUPS]]

defs = dg.Definitions(assets=FLOOR_ASSETS, executor=dg.in_process_executor)
