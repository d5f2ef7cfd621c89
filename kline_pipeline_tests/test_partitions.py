"""Partition keys: parsing, validation and grouping into fetch sweeps."""

from datetime import date

import pytest

from kline_pipeline.partitions import (
    contiguous_runs,
    days_by_symbol,
    kline_partitions,
    split_partition_key,
    validate_symbol,
)


def test_keys_are_date_then_symbol():
    assert kline_partitions.partition_dimension_names == ["date", "symbol"]
    assert split_partition_key("2025-01-01|BTCUSDT") == (date(2025, 1, 1), "BTCUSDT")


@pytest.mark.parametrize(
    "bad",
    ["btcusdt", "BTC'; DROP TABLE price_klines;--", "", "B", "BTCUSDT ", "ВТСUSDT", "A" * 31, "BTC-USDT"],
)
def test_bad_symbols_are_refused_naming_the_value(bad):
    with pytest.raises(ValueError, match="invalid symbol") as info:
        validate_symbol(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", ["2025-01-01", "2025-13-01|BTCUSDT", "yesterday|BTCUSDT"])
def test_bad_keys_are_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match="invalid partition key"):
        split_partition_key(bad)


def test_grouping_by_symbol_and_contiguous_runs():
    keys = ["2025-01-03|ETHUSDT", "2025-01-01|BTCUSDT", "2025-01-02|BTCUSDT", "2025-01-05|BTCUSDT", "2025-01-01|BTCUSDT"]
    grouped = days_by_symbol(keys)
    assert grouped == {
        "BTCUSDT": [date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 5)],
        "ETHUSDT": [date(2025, 1, 3)],
    }
    assert contiguous_runs(grouped["BTCUSDT"]) == [[date(2025, 1, 1), date(2025, 1, 2)], [date(2025, 1, 5)]]
