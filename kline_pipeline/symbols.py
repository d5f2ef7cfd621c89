"""Adding and listing symbol partitions (used by the CLI; the UI's "add partition" is the other way)."""

from collections.abc import Sequence

import dagster as dg

from kline_pipeline.bybit import BybitClient
from kline_pipeline.partitions import symbols_partitions, validate_symbol


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
        instance.add_dynamic_partitions(symbols_partitions.name, new)
    return new


def list_symbols(instance: dg.DagsterInstance) -> list[str]:
    """The symbols that currently have partitions."""
    return list(instance.get_dynamic_partitions(symbols_partitions.name))
