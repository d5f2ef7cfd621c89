"""Request checking (kline_pipeline/backfill_requests.py): the days a range touches, and every bad
field refused with its name before anything is launched, added or asked of the exchange."""

from datetime import datetime, timezone

import pytest

from kline_pipeline.backfill_requests import RequestError, touched_days, validate_request
from kline_pipeline_tests.conftest import NOW

UTC = timezone.utc


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        ("2025-01-01T00:00:00Z", "2025-01-03T00:00:00Z", ["2025-01-01", "2025-01-02"]),  # midnight end: not Jan 3
        ("2025-01-01T12:00:00Z", "2025-01-02T00:00:00Z", ["2025-01-01"]),  # mid-day start keeps the day
        ("2025-01-01T23:55:00Z", "2025-01-02T00:05:00Z", ["2025-01-01", "2025-01-02"]),
        ("2025-01-01T01:00:00+02:00", "2025-01-01T03:00:00+02:00", ["2024-12-31", "2025-01-01"]),  # UTC days
        ("2025-02-28T00:00:00Z", "2025-06-01T00:00:00Z", ["2025-02-28", "2025-03-01"]),  # not past today
        ("2015-01-01T00:00:00Z", "2020-01-02T00:00:00Z", ["2020-01-01"]),  # not before the partitions start
    ],
)
def test_the_days_a_range_touches(start, end, days):
    assert [d.isoformat() for d in touched_days(utc(start), utc(end), now=NOW)] == days


@pytest.mark.parametrize(
    ("symbol", "start", "end", "field", "message"),
    [
        ("btcusdt", "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "symbol", "2-30 characters of A-Z and 0-9"),
        ("NOPEUSDT", "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "symbol", "'NOPEUSDT' is not listed"),
        ("BTCUSDT", "1 Jan 2025", "2025-01-02T00:00:00Z", "start", "is not an ISO 8601 time"),
        ("BTCUSDT", "2025-01-01T00:00:00Z", "2025-01-02T00:00:00", "end", "has no UTC offset"),
        ("BTCUSDT", "2025-01-02T00:00:00Z", "2025-01-02T00:00:00Z", "end", "must be after start"),
        ("BTCUSDT", "2025-03-01T12:05:00Z", "2025-03-02T00:00:00Z", "start", "in the future"),
        ("BTCUSDT", "2008-01-01T00:00:00Z", "2010-01-01T00:00:00Z", "end", "wholly before 2010-01-01"),
        ("BTCUSDT", "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z", "end", "at most 30 days"),
    ],
)
def test_validation_names_the_field(bybit, symbol, start, end, field, message):
    with pytest.raises(RequestError) as info:
        validate_request(symbol, start, end, now=NOW, max_days=30, bybit=bybit)
    assert info.value.field == field and message in str(info.value)


def test_a_malformed_symbol_costs_no_exchange_request(bybit, simulator):
    simulator.reset_requests()
    with pytest.raises(RequestError):
        validate_request("BTC-USDT", "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", now=NOW, max_days=30, bybit=bybit)
    assert simulator.requests == []
