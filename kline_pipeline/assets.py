"""The raw candle asset. Rollups live in their own module (one factory)."""

import dagster as dg

from kline_pipeline import clock
from kline_pipeline.bybit import BybitClient, BybitIpBanError, BybitRejectedError, InvalidCandleError
from kline_pipeline.ingest import ingest_partitions
from kline_pipeline.partitions import kline_partitions, partition_key
from kline_pipeline.event_writes import add_partition_metadata
from kline_pipeline.store import KlineStore

PARTITIONS_PER_RUN = 92
"""About a quarter per run: a year is 4 runs per symbol, not 365. Measured with
bench/bench_dagster.py (1 symbol x 365 days through `dagster dev`): 31 per run (12 runs) took 93 s,
61 (6 runs) 62 s, 92 (4 runs) 63 s with 12 s to spare before the daemon's completing iteration
(before Dagster's events were written in batches; with them, 92 per run: 34 s); every run costs Dagster a process, a plan and a queue slot, so fewer, larger runs finish sooner."""


@dg.asset(
    partitions_def=kline_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN),
    pool="bybit_api",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    group_name="raw",
    kinds={"postgres"},
    owners=["team:data-engineering"],
)
def price_klines_5m(context: dg.AssetExecutionContext, bybit: BybitClient, kline_store: KlineStore) -> dg.MaterializeResult:
    """Closed Bybit 5-minute candles of each (day, symbol) partition.

    Reads Bybit `/v5/market/kline` (interval 5) and `/v5/market/instruments-info` for the
    listing time; writes `price_klines` rows with timeframe '5m'. Each day is replaced in its
    own transaction (COPY into a staging table, then upsert and removal of candles the exchange
    no longer has), so re-running any partition leaves exactly the exchange's candles: no
    duplicates, corrected values, and never a half-written day. Days before the listing are
    materialised empty without a request; the still-open candle is never stored.

    Each partition's materialization shows that day's own figures (rows, changes, first/last
    candle, its share of the requests, why it is empty) beside the run's totals (`run_*`).
    """
    faults_before = bybit.retried_faults()
    try:
        report = ingest_partitions(
            bybit=bybit, store=kline_store, partition_keys=context.partition_keys, now=clock.utcnow(), log=context.log
        )
    except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt) as exc:
        # The run was terminated (its backfill canceled). Dagster turns an interrupt into a retry
        # when the asset has a RetryPolicy, and the retry would fetch the whole range again: fail
        # instead. The day being written was rolled back; every day written before is complete.
        raise dg.Failure(description="run terminated (canceled): the days written so far are complete, the "
                         "day in progress was rolled back", allow_retries=False) from exc
    except (ValueError, BybitRejectedError, BybitIpBanError, InvalidCandleError) as exc:
        # Bad input, a refused parameter, bad data or an IP ban: a retry cannot help (and would
        # extend a ban), so the run fails at once with the reason. Transient faults that outlived
        # the client's own retries, and database faults, still get the RetryPolicy.
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    finally:
        bybit.log_retried_faults(context.log, since=faults_before)  # the step's exchange faults, if any
    run = report.run_metadata()
    add_partition_metadata(context, {partition_key(d.day, d.symbol): {**d.metadata(), **run} for d in report.days})
    return dg.MaterializeResult()
