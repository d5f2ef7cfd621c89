"""Hand corrections of `price_klines` -> the exact rollup days to refresh.

A statement-level trigger with transition tables (sql/schema_010_hand_changes.sql) records every
(symbol, UTC day) whose 5m candles a statement outside the pipeline inserted, updated or deleted,
in `price_kline_hand_changes`. `rollup_refresh_sensor` takes them here, tick by tick, and requests
the six rollups of exactly those day partitions; each rollup run recomputes whole buckets of those
days from the candles and rewrites only buckets that differ (refresh_price_klines).

Taking is safe against lost and repeated work: a tick marks the pairs it takes with a claim token
that it stores in its cursor; the NEXT tick (which receives that cursor, so Dagster stored the
tick and submitted its run requests) deletes the pairs still carrying that claim. A pair changed
again after it was taken gets its claim cleared by the trigger and is taken again; pairs taken by
a tick whose cursor was never stored are taken again.

The pipeline's own writers (`DayWriter`) set `kline.pipeline_write` on their connection: their
changes already reach the rollups as Dagster materializations.
"""

import uuid
from collections.abc import Iterable
from datetime import date

from kline_pipeline.partitions import daily_partitions, partition_key, valid_symbols
from kline_pipeline.sqlfiles import sql_text
from kline_pipeline.store import KlineStore

PAGE = 5000
"""Pairs taken per tick at most (a mass correction is worked off over several ticks)."""


def new_claim() -> str:
    return uuid.uuid4().hex


def take_hand_changes(store: KlineStore, *, done_claim: str | None, claim: str,
                      limit: int = PAGE) -> list[tuple[str, date]]:
    """Forget the pairs of the stored tick's claim `done_claim`, then take up to `limit` pairs
    under `claim`, in one transaction; the taken (symbol, day) pairs, oldest change first."""
    with store.engine().begin() as conn:
        if done_claim:
            conn.exec_driver_sql(sql_text("forget_hand_changes.sql"), {"claim": done_claim})
        rows = conn.exec_driver_sql(sql_text("take_hand_changes.sql"), {"claim": claim, "limit": limit})
        return [(r.symbol, r.day) for r in rows]


def partitions_to_refresh(pairs: Iterable[tuple[str, date]], *, registered: Iterable[str],
                          today: date) -> list[str]:
    """Partition keys of the taken pairs that are partitions: an added, valid symbol and a day from
    the partitions' first day to today. Others (a purged symbol, a day before KLINE_START_DATE)
    have no rollup partition to refresh and are dropped with their claim."""
    symbols = set(valid_symbols(registered))
    first = daily_partitions.start.date()
    return sorted({partition_key(day, symbol) for symbol, day in pairs
                   if symbol in symbols and first <= day <= today})
