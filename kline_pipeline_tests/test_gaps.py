"""Gap reports: classification, the ledger written at ingest, and the `gaps` command."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from kline_pipeline.cli import main
from kline_pipeline.gaps import MISSING, NOT_CLOSED, NOT_LISTED, OUTAGE, classify, gap_report
from kline_pipeline.ingest import ingest_days
from kline_pipeline.models import to_ms
from kline_pipeline_tests.conftest import NOW

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)
H = 3_600_000


def at(hours: float) -> int:
    return to_ms(JAN1) + int(hours * H)


def test_a_hole_is_split_by_listing_outage_and_clock():
    spans = classify((at(0), at(10)), listed_ms=at(2), closed_ms=at(9), outages=[(at(4), at(5)), (at(6), at(7))])
    assert [(s.start.hour, s.end.hour, s.cause) for s in spans] == [
        (0, 2, NOT_LISTED), (2, 4, MISSING), (4, 5, OUTAGE), (5, 6, MISSING), (6, 7, OUTAGE), (7, 9, MISSING),
        (9, 10, NOT_CLOSED)]
    assert sum(s.candles for s in spans) == 120


def ledger(kline_store) -> list[tuple]:
    with kline_store.engine().connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            'SELECT symbol, start, "end", first_seen, last_confirmed FROM price_kline_gaps ORDER BY start')]


@pytest.fixture
def clean(kline_store):
    return kline_store  # emptied by the conftest fixture


def test_ingest_records_outages_idempotently_and_forgets_them_when_candles_return(clean, bybit, simulator):
    outage = (JAN1 + timedelta(hours=23), JAN1 + timedelta(days=1, hours=1))  # crosses midnight
    simulator.add_outage("BTCUSDT", to_ms(outage[0]), to_ms(outage[1]))
    days = [JAN1.date(), JAN1.date() + timedelta(days=1)]
    ingest_days(bybit=bybit, store=clean, symbol="BTCUSDT", days=days, now=NOW)
    first = ledger(clean)
    assert [(r[1], r[2]) for r in first] == [(outage[0], JAN1 + timedelta(days=1)), (JAN1 + timedelta(days=1), outage[1])]
    later = NOW + timedelta(hours=1)
    ingest_days(bybit=bybit, store=clean, symbol="BTCUSDT", days=days, now=later)
    again = ledger(clean)
    assert [r[:4] for r in again] == [r[:4] for r in first]  # same spans, first_seen kept
    assert {r[4] for r in again} == {later}  # confirmed again
    report = gap_report(clean, symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=2), now=NOW)
    assert report.totals == {MISSING: 0, OUTAGE: 24, NOT_LISTED: 0, NOT_CLOSED: 0}
    assert [(s.start, s.end, s.cause) for s in report.spans] == [(outage[0], outage[1], OUTAGE)]

    fixed = type(simulator)(instruments={"BTCUSDT": 0}, now_ms=lambda: to_ms(NOW))  # the exchange backfilled it
    fixed.start()
    try:
        bybit_fixed = type(bybit)(base_url=fixed.url, requests_per_second=1000.0)
        ingest_days(bybit=bybit_fixed, store=clean, symbol="BTCUSDT", days=days, now=NOW)
    finally:
        fixed.stop()
    assert ledger(clean) == []


def test_report_over_listing_outage_deleted_rows_and_today(clean, bybit, simulator):
    listing_day = datetime(2025, 1, 15, tzinfo=UTC)  # NEWUSDT lists at 08:00
    simulator.add_outage("NEWUSDT", to_ms(listing_day + timedelta(hours=10)), to_ms(listing_day + timedelta(hours=11)))
    days = [listing_day.date() + timedelta(days=d) for d in range(2)]
    ingest_days(bybit=bybit, store=clean, symbol="NEWUSDT", days=days, now=NOW)
    with clean.engine().begin() as conn:  # lose 30 minutes by hand
        conn.exec_driver_sql(
            "DELETE FROM price_klines WHERE symbol = 'NEWUSDT' AND timestamp >= '2025-01-16 03:00+00' "
            "AND timestamp < '2025-01-16 03:30+00'")
    report = gap_report(clean, symbol="NEWUSDT", start=listing_day, end=listing_day + timedelta(days=2), now=NOW)
    assert [(s.start, s.candles, s.cause) for s in report.spans] == [
        (listing_day, 96, NOT_LISTED), (listing_day + timedelta(hours=10), 12, OUTAGE),
        (listing_day + timedelta(days=1, hours=3), 6, MISSING)]
    assert report.expected == 2 * 288 - 96 and report.present == report.expected - 18
    doc = report.to_json()
    assert set(doc) == {"symbol", "start", "end", "listing", "expected", "present", "totals", "gaps"}
    assert doc["gaps"][2] == {"start": "2025-01-16T03:00:00+00:00", "end": "2025-01-16T03:30:00+00:00",
                              "candles": 6, "cause": "missing"}
    today = gap_report(clean, symbol="NEWUSDT", start=datetime(2025, 3, 1, tzinfo=UTC),
                       end=datetime(2025, 3, 2, tzinfo=UTC), now=NOW)
    # Nothing stored on 1 March: 144 closed candles missing, the rest of the day not closed yet.
    assert today.totals[MISSING] == 144 and today.totals[NOT_CLOSED] == 144


@pytest.fixture
def cli_env(monkeypatch, tmp_path, clean, database_url, dagster_storage):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
    return clean


def test_gaps_command_text_json_and_exit_codes(cli_env, bybit, simulator, capsys, frozen_clock):
    ingest_days(bybit=bybit, store=cli_env, symbol="BTCUSDT", days=[JAN1.date()], now=NOW)
    args = ["gaps", "--symbol", "BTCUSDT", "--start", "2025-01-01T00:00:00Z"]
    assert main([*args, "--end", "2025-01-02T00:00:00Z"]) == 0
    assert "288 of 288 expected candles stored" in capsys.readouterr().out
    assert main([*args, "--end", "2025-01-03T00:00:00Z", "--json"]) == 1  # Jan 2 was never fetched
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["missing"] == 288 and doc["gaps"][0]["start"] == "2025-01-02T00:00:00+00:00"


@pytest.mark.parametrize(
    ("start", "end", "symbol", "message"),
    [
        ("2025-01-02T00:00:00Z", "2025-01-01T00:00:00Z", "BTCUSDT", "--end: end 2025-01-01T00:00:00+00:00 must be after start"),
        ("2025-01-01", "2025-01-02T00:00:00Z", "BTCUSDT", "--start: '2025-01-01' has no UTC offset"),
        ("yesterday", "2025-01-02T00:00:00Z", "BTCUSDT", "--start: 'yesterday' is not an ISO 8601 time"),
        ("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "btc-usdt", "invalid symbol 'btc-usdt'"),
    ],
)
def test_gaps_command_refuses_bad_arguments(cli_env, capsys, start, end, symbol, message):
    assert main(["gaps", "--symbol", symbol, "--start", start, "--end", end]) == 2
    assert message in capsys.readouterr().err
