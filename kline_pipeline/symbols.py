"""Adding, listing and removing symbol partitions (used by the CLI; the UI's "add partition" is
the other way in, and accepts any text: `invalid_symbols` finds what it let in)."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from kline_pipeline.bybit import BybitClient
from kline_pipeline.partitions import SYMBOLS_PARTITIONS_NAME, validate_symbol
from kline_pipeline.store import KlineStore

# Run tags naming the partitions a run works on (one key, or a range of keys).
_PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def add_symbols(instance: dg.DagsterInstance, bybit: BybitClient, symbols: Sequence[str]) -> list[str]:
    """Validate every symbol (pattern, then Bybit's instruments-info), then add the new ones.

    All symbols are checked before any is added, so one bad symbol changes nothing.
    Returns the symbols that were newly added.
    """
    if not symbols:
        raise ValueError("no symbol given: name at least one, e.g. BTCUSDT")
    for symbol in symbols:
        validate_symbol(symbol)
    for symbol in symbols:
        bybit.get_instrument(symbol=symbol)  # raises UnknownSymbolError naming the symbol
    existing = set(list_symbols(instance))
    new = [s for s in dict.fromkeys(symbols) if s not in existing]
    if new:
        instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, new)
    return new


def list_symbols(instance: dg.DagsterInstance) -> list[str]:
    """The symbols that currently have partitions."""
    return list(instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))


def invalid_symbols(instance: dg.DagsterInstance) -> list[str]:
    """Symbol partitions that are not valid symbols (added through the UI's "add partition")."""
    bad = []
    for symbol in list_symbols(instance):
        try:
            validate_symbol(symbol)
        except ValueError:
            bad.append(symbol)
    return bad


@dataclass(frozen=True)
class Removal:
    """What `remove_symbol` did."""

    symbol: str
    partition_removed: bool
    rows_deleted: dict[str, int] = field(default_factory=dict)
    """Per table, with `purge`; empty without."""


def _works_on(instance: dg.DagsterInstance, symbol: str) -> list[str]:
    """Unfinished runs and backfills whose partitions include `symbol` (their ids)."""
    from kline_pipeline.repository_graph import asset_graph

    suffix = f"|{symbol}"
    busy = [run.run_id for run in instance.get_runs(filters=dg.RunsFilter(statuses=NOT_FINISHED_STATUSES))
            if run.tags.get("dagster/partition/symbol") == symbol
            or any(run.tags.get(tag, "").endswith(suffix) for tag in _PARTITION_TAGS)]
    live = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=live)):
        try:
            data = backfill.get_asset_backfill_data(asset_graph()) if backfill.is_asset_backfill else None
        except Exception:  # a target Dagster can no longer read: the daemon fails that backfill anyway
            continue
        if data and any(str(ap.partition_key).endswith(suffix) for ap in data.target_subset.iterate_asset_partitions()):
            busy.append(f"backfill {backfill.backfill_id}")
    return busy


def remove_symbol(instance: dg.DagsterInstance, symbol: str, *, purge: bool, store: KlineStore | None = None) -> Removal:
    """Remove `symbol`'s partition; with `purge`, also delete its rows from the candle store.

    Any text is accepted (the point is to remove what the UI let in). Refused with a ValueError
    naming them while runs or backfills still work on the symbol (cancel them first), and for
    a symbol that has no partition when not purging. Without `purge` the stored candles stay (a
    later `symbols add` makes them visible again); with it, `sql/purge_symbol.sql` deletes them
    in one transaction. Safe to repeat.
    """
    present = symbol in list_symbols(instance)
    if not present and not purge:
        known = ", ".join(repr(s) for s in list_symbols(instance)) or "none"
        raise ValueError(f"no symbol partition {symbol!r} (present: {known}); nothing was removed")
    busy = _works_on(instance, symbol)
    if busy:
        raise ValueError(f"{symbol!r} is still being worked on by {', '.join(busy[:5])}; cancel "
                         "(`kline-pipeline backfill --cancel ID`) or wait, then remove it; nothing was removed")
    rows = (store or KlineStore()).purge_symbol(symbol) if purge else {}
    if present:
        instance.delete_dynamic_partition(SYMBOLS_PARTITIONS_NAME, symbol)
    return Removal(symbol=symbol, partition_removed=present, rows_deleted=rows)
