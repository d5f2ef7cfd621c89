"""kline-pipeline: exact Bybit 5-minute candles in PostgreSQL, orchestrated by Dagster."""

import os

if os.environ.get("KLINE_QUIET_WARNINGS") == "1":  # set by `kline-pipeline` for itself and its children
    from kline_pipeline.quiet import quiet_warnings

    quiet_warnings()
