"""The six rollups of `price_klines_5m`, built by one factory over one SQL routine."""

from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from kline_pipeline.assets import PARTITIONS_PER_RUN, price_klines_5m
from kline_pipeline.ingest import DAY, day_start
from kline_pipeline.partitions import contiguous_runs, days_by_symbol, kline_partitions
from kline_pipeline.store import KlineStore

# Refresh the rollups of exactly the raw partitions that changed, however old. Plain eager()
# only looks at the latest time window (measured on dagster 1.13.27: a historical backfill got
# no rollups); without that clause every updated partition counts. eager() also skips
# partitions whose rollup was already materialised after the raw one (same run) and waits
# while the raw partition is in progress.
ROLLUP_AUTOMATION = dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())


@dataclass(frozen=True)
class Rollup:
    """One rollup timeframe: `15m` -> table price_klines_15m, 3 five-minute candles per bucket."""

    timeframe: str
    minutes: int

    @property
    def table(self) -> str:
        return f"price_klines_{self.timeframe}"

    @property
    def full_count(self) -> int:
        return self.minutes // 5

    @property
    def stride(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    @property
    def bybit_interval(self) -> str:
        """The same candles' interval on Bybit's kline endpoint (to compare with the exchange)."""
        return "D" if self.minutes == 1440 else str(self.minutes)


ROLLUPS = (
    Rollup("15m", 15), Rollup("30m", 30), Rollup("1h", 60), Rollup("4h", 240), Rollup("12h", 720), Rollup("1d", 1440),
)


def build_rollup_asset(rollup: Rollup) -> dg.AssetsDefinition:
    """The asset `price_klines_<timeframe>`, partitioned like and depending on `price_klines_5m`."""

    @dg.asset(
        name=rollup.table,
        deps=[price_klines_5m],  # same partitions definition: identity mapping
        partitions_def=kline_partitions,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN),
        automation_condition=ROLLUP_AUTOMATION,
        group_name="rollups",
        kinds={"postgres"},
        owners=["team:data-engineering"],
        description=(
            f"{rollup.minutes}-minute candles of each (day, symbol), recomputed exactly from price_klines "
            f"(5m) by refresh_price_klines('{rollup.table}', ...). Buckets align to UTC midnight; a full "
            f"bucket holds {rollup.full_count} five-minute candles. Reads price_klines, writes {rollup.table}; "
            "re-running recomputes the same buckets (unchanged rows are not rewritten, vanished ones removed)."
        ),
    )
    def _rollup(context: dg.AssetExecutionContext, kline_store: KlineStore) -> dg.MaterializeResult:
        buckets = partial = 0
        last = None
        for symbol, days in days_by_symbol(context.partition_keys).items():
            # Every bucket lies inside one UTC day, so a run of days is one independent window.
            for run in contiguous_runs(days):
                summary = kline_store.refresh_rollup(
                    rollup=rollup.table, symbol=symbol, start=day_start(run[0]), end=day_start(run[-1]) + DAY
                )
                buckets += summary.buckets
                partial += summary.partial_buckets
                if summary.last_bucket and (last is None or summary.last_bucket > last):
                    last = summary.last_bucket
        kline_store.record_job_run(rollups=[rollup.timeframe], succeeded=True,  # timescaledb_information
                                   started_at=context.instance.get_run_record_by_id(context.run_id).start_time)
        return dg.MaterializeResult(
            metadata={
                "partitions": len(context.partition_keys),
                "buckets": buckets,
                "partial_buckets": partial,
                "full_bucket_candles": rollup.full_count,
                "last_bucket": last.isoformat() if last else "none",
            }
        )

    return _rollup


rollup_assets = [build_rollup_asset(r) for r in ROLLUPS]
