"""Automation: the rollups follow every raw update, by any means, batched per symbol and range."""

import dagster as dg

# Evaluates the rollups' automation condition (see rollups.ROLLUP_AUTOMATION). Many partitions
# requested in one tick become one backfill, which the backfill policy splits into one run per
# symbol and contiguous range of up to PARTITIONS_PER_RUN (92) days, instead of one run per partition.
rollup_refresh_sensor = dg.AutomationConditionSensorDefinition(
    name="rollup_refresh_sensor",
    target=dg.AssetSelection.groups("rollups"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes the rollups of every price_klines_5m partition that was materialised, however old.",
)
