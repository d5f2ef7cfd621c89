"""The six rollups of `price_klines_5m`, built by one factory over one SQL routine."""

from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from kline_pipeline.assets import PARTITIONS_PER_RUN, price_klines_5m
from kline_pipeline.ingest import DAY, day_start
from kline_pipeline.partitions import contiguous_runs, days_by_symbol, kline_partitions, partition_key
from kline_pipeline.event_writes import Metadata, add_partition_metadata
from kline_pipeline.store import KlineStore

@dataclass(frozen=True)
class Rollup:
    """One rollup timeframe: `15m` -> table price_klines_15m, 3 five-minute candles per bucket,
    recomputed `lookback_minutes` back by every live tick (the old app's refresh policy).

    ROLLUPS below is the one list of them: the assets, the live lookbacks, the Bybit intervals and
    the benches derive from it; the SQL registries (price_kline_rollups, price_kline_refresh_jobs)
    are seeded by migrations and tested against it (test_rollups.py)."""

    timeframe: str
    minutes: int
    lookback_minutes: int

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
    Rollup("15m", 15, 30), Rollup("30m", 30, 60), Rollup("1h", 60, 120), Rollup("4h", 240, 480),
    Rollup("12h", 720, 1440), Rollup("1d", 1440, 2880),
)


def build_rollup_asset(rollup: Rollup) -> dg.AssetsDefinition:
    """The asset `price_klines_<timeframe>`, partitioned like and depending on `price_klines_5m`."""

    @dg.asset(
        name=rollup.table,
        deps=[price_klines_5m],  # same partitions definition: identity mapping
        partitions_def=kline_partitions,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN),
        group_name="rollups",
        kinds={"postgres"},
        owners=["team:data-engineering"],
        description=(
            f"{rollup.minutes}-minute candles of each (day, symbol), recomputed exactly from price_klines "
            f"(5m) by refresh_price_klines('{rollup.table}', ...). Buckets align to UTC midnight; a full "
            f"bucket holds {rollup.full_count} five-minute candles. Reads price_klines, writes {rollup.table}; "
            "re-running recomputes the same buckets (unchanged rows are not rewritten, vanished ones removed). "
            "rollup_refresh_sensor refreshes it wherever price_klines_5m was materialized."
        ),
    )
    def _rollup(context: dg.AssetExecutionContext, kline_store: KlineStore) -> dg.MaterializeResult:
        figures: dict[str, Metadata] = {}
        buckets = 0
        for symbol, days in days_by_symbol(context.partition_keys).items():
            # Every bucket lies inside one UTC day, so a run of days is one independent window.
            for run in contiguous_runs(days):
                summary = kline_store.refresh_rollup(
                    rollup=rollup.table, symbol=symbol, start=day_start(run[0]), end=day_start(run[-1]) + DAY
                )
                for day in run:  # each day partition shows its own buckets
                    of_day = summary.for_day(day)
                    buckets += of_day.buckets
                    figures[partition_key(day, symbol)] = of_day.metadata(rollup.full_count)
        totals = {"run_partitions": len(figures), "run_buckets": buckets}
        add_partition_metadata(context, {key: {**day, **totals} for key, day in figures.items()})
        kline_store.record_job_run(rollups=[rollup.timeframe], succeeded=True,  # timescaledb_information
                                   started_at=context.instance.get_run_record_by_id(context.run_id).start_time)
        return dg.MaterializeResult()

    return _rollup


rollup_assets = [build_rollup_asset(r) for r in ROLLUPS]
