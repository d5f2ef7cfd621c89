"""The simulator models the real exchange's edges: statuses and delisting, symbol sets per
category, a skewed exchange clock, start=0 read as "not given", and retCodes 5004 / 10018."""

import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from kline_pipeline.simulator import BybitSimulator, parse_delisting_spec, parse_instrument_spec
from kline_pipeline.simulator.faults import IP_LIMIT_RESET_MS

FIVE = 300_000
DAY = 86_400_000
NOW = 1_736_944_496_789  # 2025-01-15T12:34:56.789Z
LAUNCH = 1_704_067_200_000  # 2024-01-01
DELIST = 1_735_689_600_000  # 2025-01-01: LUNAUSDT stops trading
KLINE = "/v5/market/kline"
INFO = "/v5/market/instruments-info"


@pytest.fixture
def sim() -> Iterator[BybitSimulator]:
    simulator = BybitSimulator(
        instruments={"BTCUSDT": LAUNCH, "LUNAUSDT": LAUNCH, "SOONUSDT": NOW + DAY,
                     "spot:BTCUSDT": LAUNCH, "spot:SPOTONLY": LAUNCH, "linear:LINONLY": LAUNCH},
        delistings={"LUNAUSDT": DELIST},
    )
    simulator.set_now(NOW)
    simulator.start()
    yield simulator
    simulator.stop()


def get(sim: BybitSimulator, path: str = KLINE, **params: object) -> dict:
    response = requests.get(sim.url + path, params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def listed(sim: BybitSimulator, category: str, **params: object) -> dict[str, dict]:
    body = get(sim, INFO, category=category, **params)
    assert body["retCode"] == 0, body
    return {i["symbol"]: i for i in body["result"]["list"]}


def test_only_trading_symbols_are_listed_unless_a_status_is_asked_for(sim: BybitSimulator) -> None:
    assert set(listed(sim, "linear")) == {"BTCUSDT", "LINONLY"}
    closed = listed(sim, "linear", status="Closed")
    assert set(closed) == {"LUNAUSDT"} and closed["LUNAUSDT"]["deliveryTime"] == str(DELIST)
    assert closed["LUNAUSDT"]["status"] == "Closed" and closed["LUNAUSDT"]["launchTime"] == str(LAUNCH)
    assert listed(sim, "linear", symbol="LUNAUSDT") == {}
    assert set(listed(sim, "linear", status="PreLaunch")) == {"SOONUSDT"}
    assert listed(sim, "linear", status="Trading")["BTCUSDT"]["deliveryTime"] == "0"
    assert get(sim, INFO, category="linear", status="Gone")["retCode"] == 10001


def test_a_symbol_settles_in_the_day_before_its_delisting_and_has_no_candle_after_it(sim: BybitSimulator) -> None:
    sim.set_now(DELIST - 3_600_000)
    assert set(listed(sim, "linear", status="Delivering")) == {"LUNAUSDT"}
    sim.set_now(NOW)
    rows = get(sim, category="linear", symbol="LUNAUSDT", interval="5", start=DELIST - 2 * FIVE,
               end=DELIST + 10 * FIVE)["result"]["list"]
    assert [int(r[0]) for r in rows] == [DELIST - FIVE, DELIST - 2 * FIVE]  # history stays readable
    assert get(sim, category="linear", symbol="LUNAUSDT", interval="5")["result"]["list"][0][0] == str(DELIST - FIVE)
    assert sim.candles("LUNAUSDT", DELIST - FIVE, DELIST + DAY)[-1][0] == str(DELIST - FIVE)


def test_each_category_lists_its_own_symbols_with_its_own_prices(sim: BybitSimulator) -> None:
    assert set(listed(sim, "spot")) == {"BTCUSDT", "SPOTONLY"}
    assert set(listed(sim, "inverse")) == {"BTCUSDT"}
    assert all("launchTime" not in i and "deliveryTime" not in i for i in listed(sim, "spot").values())
    assert get(sim, category="spot", symbol="LINONLY", interval="5")["retCode"] == 10001
    assert get(sim, category="linear", symbol="SPOTONLY", interval="5")["retCode"] == 10001
    window = {"interval": "5", "start": DELIST, "end": DELIST + 11 * FIVE}
    spot = get(sim, category="spot", symbol="BTCUSDT", **window)["result"]["list"]
    linear = get(sim, category="linear", symbol="BTCUSDT", **window)["result"]["list"]
    inverse = get(sim, category="inverse", symbol="BTCUSDT", **window)["result"]["list"]
    assert [r[0] for r in spot] == [r[0] for r in linear] and len(spot) == 12
    assert [r[1:] for r in spot] != [r[1:] for r in linear]  # spot is its own market
    assert inverse == linear  # a plain instrument is one series in every category
    assert spot[::-1] == sim.candles("spot:BTCUSDT", DELIST, DELIST + 12 * FIVE)


def test_clock_skew_moves_the_exchange_time_and_the_open_candle(sim: BybitSimulator) -> None:
    sim.set_now(NOW - NOW % FIVE + FIVE + 1000)  # the caller: 1 s after a candle closed
    sim.set_clock_skew(-2000)                     # the exchange: 1 s before it
    response = requests.get(sim.url + "/v5/market/time", timeout=5)
    exchange_ms = NOW - NOW % FIVE + FIVE - 1000
    assert response.json()["time"] == exchange_ms and response.headers["Timenow"] == str(exchange_ms)
    newest = get(sim, category="linear", symbol="BTCUSDT", interval="5", limit=1)["result"]["list"][0]
    assert int(newest[0]) == NOW - NOW % FIVE  # still open by the exchange's clock
    assert newest != sim.candles("BTCUSDT", int(newest[0]), int(newest[0]) + FIVE)[0]  # partial


def test_the_clock_skew_can_be_set_over_http(sim: BybitSimulator) -> None:
    assert requests.post(sim.url + "/_sim/now", json={"ms": NOW, "skew_ms": 2500}, timeout=5).status_code == 200
    assert get(sim, "/v5/market/time")["time"] == NOW + 2500
    bad = requests.post(sim.url + "/_sim/now", json={"ms": NOW, "skew_ms": "2.5 s"}, timeout=5)
    assert bad.status_code == 400 and "skew_ms must be an integer, got '2.5 s'" in bad.json()["error"]


def test_start_zero_is_read_as_not_given(sim: BybitSimulator) -> None:
    probe = get(sim, category="spot", symbol="BTCUSDT", interval="5", start=0, limit=1)["result"]["list"]
    assert int(probe[0][0]) == NOW - NOW % FIVE  # the open candle, not the first one
    early = get(sim, category="spot", symbol="BTCUSDT", interval="5", start=1, limit=1)["result"]["list"]
    assert int(early[0][0]) == LAUNCH


@pytest.mark.parametrize(("kind", "ret_code", "message"), [("5004", 5004, "Server Timeout"),
                                                           ("10018", 10018, "Exceeded the IP Rate Limit")])
def test_server_timeout_and_ip_rate_limit_codes(sim: BybitSimulator, kind: str, ret_code: int, message: str) -> None:
    sim.set_clock_skew(5000)
    sim.inject(kind)
    response = requests.get(sim.url + KLINE, params={"symbol": "BTCUSDT", "interval": "5"}, timeout=5)
    body = response.json()
    assert response.status_code == 200 and (body["retCode"], body["retMsg"]) == (ret_code, message)
    if kind == "10018":  # the reset lies ahead on the exchange's clock, not the caller's
        assert int(response.headers["X-Bapi-Limit-Reset-Timestamp"]) == NOW + 5000 + IP_LIMIT_RESET_MS
        assert response.headers["X-Bapi-Limit-Status"] == "0"


def test_specs_take_a_category_and_a_delisting() -> None:
    assert parse_instrument_spec("spot:NEWUSDT:2025-01-15") == ("spot:NEWUSDT", 1_736_899_200_000)
    assert parse_instrument_spec("NEWUSDT:2025-01-15T08:00:00Z") == ("NEWUSDT", 1_736_928_000_000)
    assert parse_delisting_spec("LUNAUSDT:2022-05-13") == ("LUNAUSDT", 1_652_400_000_000)
    assert parse_delisting_spec("inverse:LUNAUSD:2022-05-13") == ("inverse:LUNAUSD", 1_652_400_000_000)
    with pytest.raises(ValueError, match="2022-13-01"):
        parse_delisting_spec("LUNAUSDT:2022-13-01")
    with pytest.raises(ValueError, match="futures:X"):
        parse_instrument_spec("futures:X:2025-01-01")


@pytest.mark.parametrize(("args", "named"), [
    (["--clock-skew", "soon"], "'soon' is not a number of seconds"),
    (["--delist", "NOPEUSDT:2025-01-01"], "unknown symbol to delist: 'NOPEUSDT'"),
    (["--delist", "BTCUSDT:2019-01-01"], "is not after its listing"),
])
def test_simulate_exchange_refuses_bad_edges_with_exit_2(args: list[str], named: str) -> None:
    done = subprocess.run([sys.executable, "-m", "kline_pipeline.cli", "simulate-exchange", "--port", "1", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and named in done.stderr, done.stderr


def test_the_exchange_time_can_be_left_out_of_replies_over_http(sim):
    params = {"category": "linear", "symbol": "BTCUSDT", "interval": "5", "limit": 1}
    body = requests.get(sim.url + KLINE, params=params, timeout=5)
    assert body.json()["time"] == NOW and body.headers["Timenow"] == str(NOW)
    assert requests.post(sim.url + "/_sim/now", json={"ms": NOW, "omit_time": ["body"]}, timeout=5).status_code == 200
    body = requests.get(sim.url + KLINE, params=params, timeout=5)
    assert "time" not in body.json() and body.headers["Timenow"] == str(NOW)
    sim.set_omit_time("body", "header", "endpoint")
    body = requests.get(sim.url + KLINE, params=params, timeout=5)
    assert "time" not in body.json() and "Timenow" not in body.headers and body.json()["result"]["list"]
    assert requests.get(sim.url + "/v5/market/time", timeout=5).status_code == 404
    sim.set_omit_time()
    assert get(sim, "/v5/market/time")["result"]["timeSecond"] == str(NOW // 1000)
    with pytest.raises(ValueError, match="unknown time part"):
        sim.set_omit_time("footer")


def test_a_delisting_can_be_postponed_and_cancelled_over_http(sim):
    def luna() -> dict:
        return listed(sim, "linear", symbol="LUNAUSDT", status="Closed").get("LUNAUSDT") or \
            listed(sim, "linear", symbol="LUNAUSDT").get("LUNAUSDT")

    assert luna()["deliveryTime"] == str(DELIST) and luna()["status"] == "Closed"
    later = NOW + 2 * DAY
    assert requests.post(sim.url + "/_sim/delistings", json={"symbol": "LUNAUSDT", "delivery_ms": later},
                         timeout=5).status_code == 200
    assert (luna()["status"], luna()["deliveryTime"]) == ("Trading", str(later))  # postponed: trades again
    assert requests.post(sim.url + "/_sim/delistings", json={"symbol": "LUNAUSDT", "delivery_ms": None},
                         timeout=5).status_code == 200
    assert (luna()["status"], luna()["deliveryTime"]) == ("Trading", "0")  # cancelled
    assert requests.post(sim.url + "/_sim/delistings", json={"symbol": "LUNAUSDT", "delivery_ms": None},
                         timeout=5).status_code == 400  # nothing left to cancel
