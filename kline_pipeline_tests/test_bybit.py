"""The Bybit client against the simulator over real HTTP."""

import logging
from datetime import datetime, timedelta, timezone

import pytest

from kline_pipeline.bybit import (
    BybitClient,
    BybitIpBanError,
    BybitRejectedError,
    BybitUnavailableError,
    InvalidCandleError,
    UnknownSymbolError,
    parse_candle,
)
from kline_pipeline.models import CANDLE_MS, Candle, to_ms
from kline_pipeline_tests.conftest import LISTINGS, NOW

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)


def expected(simulator, symbol: str, start: datetime, end: datetime) -> list[Candle]:
    return [Candle(int(r[0]), *r[1:7]) for r in simulator.candles(symbol, to_ms(start), to_ms(end))]


def test_one_day_is_288_candles_in_one_request(bybit, simulator):
    candles = bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=1), now=NOW)
    assert len(candles) == 288
    assert candles == expected(simulator, "BTCUSDT", JAN1, JAN1 + timedelta(days=1))
    assert len(simulator.kline_requests()) == 1


def test_windows_hold_at_most_1000_candles_and_carry_start_and_end(bybit, simulator):
    end = JAN1 + timedelta(days=4)  # 1152 candles -> 1000 + 152
    candles = bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=end, now=NOW)
    assert candles == expected(simulator, "BTCUSDT", JAN1, end)
    assert len({c.start_ms for c in candles}) == 1152  # the window boundary candle appears once
    reqs = simulator.kline_requests()
    assert len(reqs) == 2
    for req in reqs:
        start, stop = int(req.params["start"]), int(req.params["end"])
        assert (stop - start) // CANDLE_MS + 1 <= 1000
        assert req.params["limit"] == "1000" and req.params["interval"] == "5"
    assert int(reqs[1].params["start"]) == int(reqs[0].params["end"]) + CANDLE_MS


def test_range_not_on_the_grid_keeps_candles_opening_inside_it(bybit, simulator):
    start, end = JAN1 + timedelta(minutes=2), JAN1 + timedelta(hours=1, minutes=3)
    candles = bybit.fetch_klines(symbol="BTCUSDT", start=start, end=end, now=NOW)
    assert [c.start for c in candles] == [JAN1 + timedelta(minutes=5 * i) for i in range(1, 13)]


def test_result_is_oldest_first_even_though_bybit_answers_newest_first(bybit):
    candles = bybit.fetch_klines(symbol="ETHUSDT", start=JAN1, end=JAN1 + timedelta(hours=5), now=NOW)
    starts = [c.start_ms for c in candles]
    assert starts == sorted(starts) and len(starts) == 60


def test_the_open_candle_is_never_returned(bybit, simulator):
    day = datetime(2025, 3, 1, tzinfo=UTC)  # NOW is 12:02:30: the 12:00 candle is still open
    candles = bybit.fetch_klines(symbol="BTCUSDT", start=day, end=day + timedelta(days=1), now=NOW)
    assert candles[-1].start == datetime(2025, 3, 1, 11, 55, tzinfo=UTC)
    assert len(candles) == 144
    at_close = NOW.replace(minute=5, second=0)  # once 12:05 has come, the 12:00 candle is closed
    simulator.set_now(to_ms(at_close))
    later = bybit.fetch_klines(symbol="BTCUSDT", start=day, end=day + timedelta(days=1), now=at_close)
    assert later[-1].start == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert later[-1] == expected(simulator, "BTCUSDT", later[-1].start, at_close)[0]


def test_pre_listing_range_is_empty_and_listing_time_is_known(bybit):
    instrument = bybit.get_instrument(symbol="NEWUSDT")
    assert to_ms(instrument.launch_time) == LISTINGS["NEWUSDT"]
    assert bybit.fetch_klines(symbol="NEWUSDT", start=JAN1, end=JAN1 + timedelta(days=3), now=NOW) == []
    listing_day = datetime(2025, 1, 15, tzinfo=UTC)
    candles = bybit.fetch_klines(symbol="NEWUSDT", start=listing_day, end=listing_day + timedelta(days=1), now=NOW)
    assert candles[0].start == datetime(2025, 1, 15, 8, 0, tzinfo=UTC) and len(candles) == 16 * 12


def test_spot_listing_is_probed_from_the_first_candle(simulator):
    client = BybitClient(base_url=simulator.url, requests_per_second=1000.0)
    instrument = client.get_instrument(symbol="spot:NEWUSDT")
    assert (instrument.symbol, to_ms(instrument.launch_time)) == ("spot:NEWUSDT", LISTINGS["NEWUSDT"])


def test_empty_range_makes_no_request(bybit, simulator):
    assert bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=JAN1, now=NOW) == []
    assert simulator.kline_requests() == []


@pytest.mark.parametrize("fault", ["10006", "10000", "10016", "502", "429", "badjson", "truncated", "slow:3"])
def test_transient_fault_then_success(bybit, simulator, fault):
    simulator.inject(fault)
    candles = bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=1), now=NOW)
    assert candles == expected(simulator, "BTCUSDT", JAN1, JAN1 + timedelta(days=1))
    assert [r.fault for r in simulator.kline_requests()] == [fault, None]


def test_retried_faults_are_tallied_by_cause_and_logged(bybit, simulator, caplog):
    simulator.inject("502", "10006", "ok", "502", "badjson", "ok")
    before = bybit.retried_faults()
    for day in range(3):  # two faults before each of the first two days succeeds
        bybit.fetch_klines(symbol="BTCUSDT", start=JAN1 + timedelta(days=day), end=JAN1 + timedelta(days=day + 1), now=NOW)
    assert bybit.retried_faults() == {"HTTP 502": 2, "retCode 10006": 1, "a body that is not valid JSON": 1}
    log = logging.getLogger("test_bybit")
    with caplog.at_level(logging.INFO, logger="test_bybit"):
        bybit.log_retried_faults(log, since=before)
        bybit.log_retried_faults(log, since=bybit.retried_faults())  # nothing new: nothing logged
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Bybit: 4 transient fault(s) retried: HTTP 502 x2, a body that is not valid JSON x1, retCode 10006 x1")]


def test_a_fault_that_ends_the_retries_is_not_counted_as_retried(bybit, simulator):
    simulator.inject(*["502"] * 10)
    with pytest.raises(BybitUnavailableError):
        bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=1), now=NOW)
    assert bybit.retried_faults() == {"HTTP 502": 3}  # 4 attempts: 3 retried, the 4th gave up


def test_persistent_502_fails_with_a_clear_message(bybit, simulator):
    simulator.inject(*["502"] * 10)
    with pytest.raises(BybitUnavailableError, match=r"after 4 attempts; last cause: HTTP 502"):
        bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=1), now=NOW)
    assert len(simulator.kline_requests()) == 4


def test_10001_is_not_retried_and_names_the_symbol(bybit, simulator):
    with pytest.raises(BybitRejectedError, match="Not supported symbols"):
        bybit.fetch_klines(symbol="NOPEUSDT", start=JAN1, end=JAN1 + timedelta(days=1), now=NOW)
    assert len(simulator.kline_requests()) == 1
    with pytest.raises(UnknownSymbolError, match="'NOPEUSDT' is not listed"):
        bybit.get_instrument(symbol="NOPEUSDT")


def test_403_stops_at_once(bybit, simulator):
    simulator.inject("403")
    with pytest.raises(BybitIpBanError, match="403.*10 minutes"):
        bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=1), now=NOW)
    assert len(simulator.kline_requests()) == 1


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        (["1735689600000", "100", "99", "101", "100", "1", "100"], "high 99 is below low 101"),
        (["1735689600000", "100", "99.5", "99", "100", "1", "100"], "high 99.5 is below max"),
        (["1735689600000", "100", "101", "100.5", "100", "1", "100"], "low 100.5 is above min"),
        (["1735689660000", "100", "101", "99", "100", "1", "100"], "not on the 5-minute grid"),
        (["1735689600000", "100", "101", "99", "100", "-1", "100"], "negative volume"),
        (["1735689600000", "abc", "101", "99", "100", "1", "100"], "malformed candle row"),
    ],
)
def test_a_broken_row_is_refused_naming_symbol_time_and_rule(row, rule):
    with pytest.raises(InvalidCandleError, match=rule) as info:
        parse_candle("BTCUSDT", row)
    assert "BTCUSDT" in str(info.value)
    if "malformed" not in rule and "grid" not in rule:
        assert "2025-01-01T00:00:00+00:00" in str(info.value)


def test_unknown_category_is_refused_naming_what_is_allowed(monkeypatch):
    with pytest.raises(ValueError, match=r"invalid Bybit category 'futures': only linear \(or unset\) is allowed"):
        _ = BybitClient(category="futures").resolved_category
    monkeypatch.setenv("BYBIT_CATEGORY", "futures")
    with pytest.raises(ValueError, match=r"invalid Bybit category 'futures': only linear \(or unset\) is allowed"):
        _ = BybitClient().resolved_category


@pytest.mark.parametrize("category", ["spot", "inverse"])
def test_a_non_linear_category_field_is_refused_before_any_request(simulator, category):
    # It would fetch spot candles for the bare BTCUSDT that ingest writes under the linear name.
    client = BybitClient(base_url=simulator.url, category=category)
    day = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match=f"category={category} is no longer supported.*{category}:BTCUSDT"):
        client.fetch_klines(symbol="BTCUSDT", start=day, end=day + timedelta(days=1), now=day + timedelta(days=2))
    with pytest.raises(ValueError, match=f"category={category} is no longer supported"):
        client.get_instrument(symbol="BTCUSDT")
    assert simulator.requests == []
    assert BybitClient(base_url=simulator.url, category="linear").get_instrument(symbol="BTCUSDT").symbol == "BTCUSDT"


def test_environment_configures_url_and_the_symbol_names_the_market(monkeypatch, simulator):
    monkeypatch.setenv("BYBIT_BASE_URL", simulator.url)
    client = BybitClient()
    assert client.resolved_base_url == simulator.url and client.resolved_category == "linear"
    assert client.get_instrument(symbol="inverse:BTCUSDT").symbol == "inverse:BTCUSDT"
    assert simulator.requests[-1].params["category"] == "inverse" and simulator.requests[-1].params["symbol"] == "BTCUSDT"
    client.get_instrument(symbol="BTCUSDT")
    assert simulator.requests[-1].params["category"] == "linear"


def test_a_category_switch_by_environment_is_refused_naming_the_market_syntax(monkeypatch, simulator):
    monkeypatch.setenv("BYBIT_BASE_URL", simulator.url)
    monkeypatch.setenv("BYBIT_CATEGORY", "spot")
    with pytest.raises(ValueError, match=r"BYBIT_CATEGORY=spot is no longer supported.*add spot:BTCUSDT"):
        BybitClient().get_instrument(symbol="BTCUSDT")
    assert simulator.requests == []


def test_other_intervals_are_fetched_on_their_own_grid(bybit, simulator):
    hours = bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=1), now=NOW, interval="60")
    assert [c.start_ms for c in hours] == [to_ms(JAN1) + h * 3_600_000 for h in range(24)]
    assert hours == [Candle(int(r[0]), *r[1:7]) for r in simulator.candles(
        "BTCUSDT", to_ms(JAN1), to_ms(JAN1 + timedelta(days=1)), "60")]
    with pytest.raises(ValueError, match="invalid interval '7'"):
        bybit.fetch_klines(symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=1), now=NOW, interval="7")
