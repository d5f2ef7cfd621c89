"""The one place the Dagster `Definitions` of kline-pipeline are built."""

import os

import dagster as dg

from kline_pipeline import crash
from kline_pipeline.cancel_sensor import cancel_sensor
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient
from kline_pipeline.checks import raw_checks, rollup_checks
from kline_pipeline.freshness import candles_fresh_sensor
from kline_pipeline.instance.env import EVENT_BATCH_ENV, EVENT_BATCH_SIZE
from kline_pipeline.rollups import rollup_assets
from kline_pipeline.repair_job import outage_repair, outage_repair_job
from kline_pipeline.schedules import live_refresh, live_refresh_job
from kline_pipeline.sensors import rollup_refresh_sensor
from kline_pipeline.store import KlineStore

# The code server loading these definitions is what reports a dead run worker: make it say
# whether memory really was the cause (kline_pipeline/crash.py).
crash.install()

# A run's worker loads these definitions before it writes an event, so this batches each asset's
# per-partition materializations (kline_pipeline/instance/env.py) even under a plain
# `dagster dev` started without the variable; a value set outside wins.
os.environ.setdefault(EVENT_BATCH_ENV, str(EVENT_BATCH_SIZE))

# Both resources read their environment (KLINE_DATABASE_URL, BYBIT_BASE_URL, BYBIT_CATEGORY)
# at run time, not here: the same definitions serve the embedded default, a server, and tests.
defs = dg.Definitions(
    assets=[price_klines_5m, *rollup_assets],
    asset_checks=[raw_checks, rollup_checks],
    sensors=[rollup_refresh_sensor, candles_fresh_sensor, cancel_sensor],
    schedules=[live_refresh, outage_repair],
    jobs=[live_refresh_job, outage_repair_job],
    resources={"bybit": BybitClient(), "kline_store": KlineStore()},
    # Every step is short and waits on the network or PostgreSQL; a run of up to a quarter is the raw
    # asset, six rollups and two check steps. Spawning a process per step (the multiprocess
    # default) costs more than the work itself on a small machine, so a run executes its steps
    # in its own process. Pools (`bybit_api`) are honoured by this executor too.
    executor=dg.in_process_executor,
)
