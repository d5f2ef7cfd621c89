"""Tests of the offline Bybit v5 simulator over real HTTP."""

from __future__ import annotations

import http.client as http_client
import json
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests

from kline_pipeline.simulator import (
    DEFAULT_INSTRUMENTS,
    FAULT_KINDS,
    BybitSimulator,
    parse_instrument_spec,
    parse_outage_spec,
)

FIVE = 300_000
HOUR = 3_600_000
DAY = 86_400_000
NOW = 1_736_944_496_789  # 2025-01-15T12:34:56.789Z: inside a 5m, 1h and 1D candle
NOW_5M = NOW - NOW % FIVE
KLINE = "/v5/market/kline"


@pytest.fixture
def sim() -> Iterator[BybitSimulator]:
    simulator = BybitSimulator()
    simulator.set_now(NOW)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def get(http: requests.Session, sim: BybitSimulator, path: str = KLINE, **params: object) -> dict:
    response = http.get(sim.url + path, params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def kline(http: requests.Session, sim: BybitSimulator, **params: object) -> list[list[str]]:
    params = {"category": "linear", "symbol": "BTCUSDT", "interval": "5", **params}
    body = get(http, sim, KLINE, **params)
    assert body["retCode"] == 0, body
    return body["result"]["list"]


def opens(rows: list[list[str]]) -> list[int]:
    return [int(r[0]) for r in rows]


# ----------------------------------------------------------------- kline basics
def test_rows_are_strings_newest_first_with_default_limit(sim: BybitSimulator, http: requests.Session) -> None:
    body = get(http, sim, category="linear", symbol="BTCUSDT", interval="5")
    assert body["retMsg"] == "OK" and body["time"] == NOW and body["retExtInfo"] == {}
    assert body["result"]["symbol"] == "BTCUSDT" and body["result"]["category"] == "linear"
    rows = body["result"]["list"]
    assert len(rows) == 200
    assert all(len(r) == 7 and all(isinstance(f, str) for f in r) for r in rows)
    assert opens(rows) == [NOW_5M - i * FIVE for i in range(200)]
    # Fixed-point decimal strings: 2 price, 3 volume, 4 turnover decimals.
    assert [len(f.split(".")[1]) for f in rows[5][1:]] == [2, 2, 2, 2, 3, 4]


def test_limit_bounds(sim: BybitSimulator, http: requests.Session) -> None:
    assert len(kline(http, sim, limit=1000)) == 1000
    assert len(kline(http, sim, limit=1)) == 1
    for bad in (1001, 0, -5):
        body = get(http, sim, symbol="BTCUSDT", interval="5", limit=bad)
        assert body["retCode"] == 10001 and "limit" in body["retMsg"]


def test_bounds_are_inclusive_and_start_is_aligned_down(sim: BybitSimulator, http: requests.Session) -> None:
    start = NOW_5M - 20 * FIVE
    rows = kline(http, sim, start=start + 123_456, end=NOW_5M - 5 * FIVE, limit=1000)
    assert opens(rows) == [NOW_5M - i * FIVE for i in range(5, 21)]
    # Closed candles are exactly the final ones.
    assert rows[::-1] == sim.candles("BTCUSDT", start, NOW_5M - 4 * FIVE)
    # An unaligned end keeps the candle opening before it.
    assert opens(kline(http, sim, start=start, end=start + FIVE + 1)) == [start + FIVE, start]


def test_start_and_end_over_limit_returns_newest(sim: BybitSimulator, http: requests.Session) -> None:
    start, end = NOW_5M - 50 * FIVE, NOW_5M - 10 * FIVE
    assert opens(kline(http, sim, start=start, end=end, limit=7)) == [end - i * FIVE for i in range(7)]


def test_start_only_returns_oldest_from_start(sim: BybitSimulator, http: requests.Session) -> None:
    start = NOW_5M - 50 * FIVE
    assert opens(kline(http, sim, start=start + 1, limit=7)) == [start + i * FIVE for i in range(6, -1, -1)]
    # Near 'now' the series simply stops at the in-progress candle.
    assert opens(kline(http, sim, start=NOW_5M - FIVE, limit=7)) == [NOW_5M, NOW_5M - FIVE]


def test_end_only_returns_newest_before_end(sim: BybitSimulator, http: requests.Session) -> None:
    end = NOW_5M - 100 * FIVE + 7
    assert opens(kline(http, sim, end=end, limit=3)) == [end - 7 - i * FIVE for i in range(3)]


def test_in_progress_candle_is_included_but_partial(sim: BybitSimulator, http: requests.Session) -> None:
    rows = kline(http, sim, end=NOW + 10 * DAY, limit=3)  # nothing after 'now' exists
    assert opens(rows) == [NOW_5M, NOW_5M - FIVE, NOW_5M - 2 * FIVE]
    final = sim.candles("BTCUSDT", NOW_5M - FIVE, NOW_5M + FIVE)
    partial = rows[0]
    assert partial[1] == final[1][1]  # same open
    assert partial[4] != final[1][4] or partial[5] != final[1][5]
    assert Decimal(partial[5]) < Decimal(final[1][5])  # volume so far < final volume
    assert Decimal(partial[2]) >= max(Decimal(partial[1]), Decimal(partial[4]))
    assert Decimal(partial[3]) <= min(Decimal(partial[1]), Decimal(partial[4]))
    assert rows[1] == final[0]  # the previous, closed candle is final
    # Once closed, the candle has its final values.
    sim.set_now(NOW_5M + FIVE)
    assert kline(http, sim, limit=2)[1] == final[1]


def test_before_listing_there_is_nothing(http: requests.Session) -> None:
    launch = 1_736_928_000_000  # 2025-01-15T08:00:00Z
    simulator = BybitSimulator(instruments={"NEWUSDT": launch})
    simulator.set_now(NOW)
    simulator.start()
    try:
        body = get(http, simulator, symbol="NEWUSDT", interval="5", start=launch - DAY, end=launch - FIVE)
        assert body["retCode"] == 0 and body["result"]["list"] == []
        rows = kline(http, simulator, symbol="NEWUSDT", start=launch - DAY, limit=3)
        assert opens(rows) == [launch + 2 * FIVE, launch + FIVE, launch]
        daily = kline(http, simulator, symbol="NEWUSDT", interval="D")
        assert opens(daily) == [launch - launch % DAY]  # listing day only
        assert simulator.candles("NEWUSDT", 0, launch) == []
    finally:
        simulator.stop()


def test_outage_span_is_absent(sim: BybitSimulator, http: requests.Session) -> None:
    o_start, o_end = NOW_5M - 20 * FIVE, NOW_5M - 12 * FIVE + 1  # unaligned end hides the candle at -12
    sim.add_outage("BTCUSDT", o_start, o_end)
    rows = kline(http, sim, start=NOW_5M - 30 * FIVE, end=NOW_5M)
    expected = [t for t in range(NOW_5M - 30 * FIVE, NOW_5M + 1, FIVE) if not o_start <= t < o_end]
    assert opens(rows) == expected[::-1]
    assert [int(r[0]) for r in sim.candles("BTCUSDT", o_start - FIVE, o_end + FIVE)] == [o_start - FIVE, o_end + FIVE - 1]
    # 'limit' counts present candles only.
    assert opens(kline(http, sim, end=o_end + FIVE, limit=2)) == [o_end - 1 + FIVE, o_start - FIVE]
    # Other symbols are unaffected.
    assert len(kline(http, sim, symbol="ETHUSDT", start=NOW_5M - 30 * FIVE, end=NOW_5M)) == 31


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbol": "DOGEUSDT", "interval": "5"}, "Not supported symbols"),
        ({"symbol": "btcusdt", "interval": "5"}, "Not supported symbols"),
        ({"interval": "5"}, "Not supported symbols"),
        ({"symbol": "BTCUSDT", "interval": "7"}, "Invalid period!"),
        ({"symbol": "BTCUSDT", "interval": "W"}, "Invalid period!"),
        ({"symbol": "BTCUSDT"}, "Invalid period!"),
        ({"symbol": "BTCUSDT", "interval": "5", "category": "option"}, "Invalid category"),
        ({"symbol": "BTCUSDT", "interval": "5", "start": "yesterday"}, "start"),
        ({"symbol": "BTCUSDT", "interval": "5", "end": "1.5"}, "end"),
    ],
)
def test_invalid_kline_params(sim: BybitSimulator, http: requests.Session, params: dict, message: str) -> None:
    body = get(http, sim, KLINE, **params)
    assert body["retCode"] == 10001 and message in body["retMsg"]
    assert body["result"] == {} and body["retExtInfo"] == {} and body["time"] == NOW


def test_spot_and_inverse_categories_serve_the_same_candles(sim: BybitSimulator, http: requests.Session) -> None:
    linear = kline(http, sim, limit=5)
    assert kline(http, sim, category="spot", limit=5) == linear
    assert kline(http, sim, category="inverse", limit=5) == linear


# -------------------------------------------------------------- aggregation
def rollup(rows: list[list[str]], step: int) -> list[list[Decimal]]:
    """Reference rollup of oldest-first 5m rows, in Decimal."""
    out: list[list[Decimal]] = []
    for r in rows:
        t, o, h, l, c, v, q = (Decimal(x) for x in r)
        bucket = Decimal(int(t) - int(t) % step)
        if out and out[-1][0] == bucket:
            cur = out[-1]
            cur[2], cur[3], cur[4] = max(cur[2], h), min(cur[3], l), c
            cur[5] += v
            cur[6] += q
        else:
            out.append([bucket, o, h, l, c, v, q])
    return out


def as_decimals(rows: list[list[str]]) -> list[list[Decimal]]:
    return [[Decimal(x) for x in r] for r in rows]


@pytest.mark.parametrize(("interval", "step", "count"), [("15", 15 * 60_000, 40), ("60", HOUR, 30),
                                                        ("240", 4 * HOUR, 12), ("D", DAY, 6)])
def test_higher_intervals_are_rollups_of_5m(sim: BybitSimulator, http: requests.Session,
                                            interval: str, step: int, count: int) -> None:
    end_bucket = NOW - NOW % step - step  # last closed bucket
    start = end_bucket - (count - 1) * step
    # An outage inside the range: two buckets partly and at least one wholly missing.
    sim.add_outage("BTCUSDT", start + step + 10 * 60_000, start + 3 * step + 25 * 60_000)
    fives = sim.candles("BTCUSDT", start, end_bucket + step, "5")
    expected = rollup(fives, step)
    assert len(expected) < count  # wholly covered buckets are absent, not empty
    rows = kline(http, sim, interval=interval, start=start + 1, end=end_bucket + step - 1, limit=1000)
    assert as_decimals(rows[::-1]) == expected
    assert as_decimals(sim.candles("BTCUSDT", start, end_bucket + step, interval)) == expected
    # A limit counts present buckets, newest first.
    assert as_decimals(kline(http, sim, interval=interval, start=start, end=end_bucket, limit=3)) == expected[:-4:-1]


@pytest.mark.parametrize(("interval", "step"), [("60", HOUR), ("D", DAY)])
def test_in_progress_aggregate_rolls_up_the_partial_5m(sim: BybitSimulator, http: requests.Session,
                                                       interval: str, step: int) -> None:
    bucket = NOW - NOW % step
    fives = kline(http, sim, start=bucket, limit=1000)[::-1]
    assert int(fives[-1][0]) == NOW_5M
    newest = kline(http, sim, interval=interval, limit=2)[0]
    assert int(newest[0]) == bucket
    assert as_decimals([newest]) == rollup(fives, step)
    assert newest != sim.candles("BTCUSDT", bucket, bucket + step, interval)[0]


# ------------------------------------------------------------ the price model
def test_candles_are_deterministic_across_instances() -> None:
    a, b = BybitSimulator(), BybitSimulator()
    for symbol in DEFAULT_INSTRUMENTS:
        assert a.candles(symbol, NOW - DAY, NOW) == b.candles(symbol, NOW - DAY, NOW)
        assert a.candles(symbol, NOW - DAY, NOW, "60") == b.candles(symbol, NOW - DAY, NOW, "60")
    # Random access: a window agrees with the same candles inside a larger window.
    whole = a.candles("ETHUSDT", NOW - DAY, NOW)
    assert a.candles("ETHUSDT", NOW - 12 * HOUR, NOW - 11 * HOUR) == whole[144:156]
    # Different symbols, different price levels; BTC in the tens of thousands.
    btc, eth, sol = (Decimal(a.candles(s, NOW - FIVE, NOW)[0][4]) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    assert btc > 10_000 and btc > eth > sol > 0


@pytest.mark.parametrize("symbol", sorted(DEFAULT_INSTRUMENTS))
def test_ohlc_invariants_and_continuity(symbol: str) -> None:
    rows = as_decimals(BybitSimulator().candles(symbol, NOW - 12 * DAY, NOW))
    assert len(rows) == 12 * 288
    for prev, cur in zip(rows, rows[1:]):
        assert cur[0] - prev[0] == FIVE
        assert prev[4] == cur[1]  # close == next open
    for _t, o, h, l, c, v, q in rows:
        assert 0 < l <= min(o, c) and h >= max(o, c)
        assert v > 0 and q > 0
    assert len({r[4] for r in rows}) > 1000  # a moving market, not a constant


# --------------------------------------------------------- other endpoints
def test_instruments_info_shape(sim: BybitSimulator, http: requests.Session) -> None:
    body = get(http, sim, "/v5/market/instruments-info", category="linear")
    assert body["retCode"] == 0 and body["result"]["category"] == "linear"
    assert body["result"]["nextPageCursor"] == ""
    items = {i["symbol"]: i for i in body["result"]["list"]}
    assert set(items) == set(DEFAULT_INSTRUMENTS)
    btc = items["BTCUSDT"]
    assert btc["contractType"] == "LinearPerpetual" and btc["status"] == "Trading"
    assert (btc["baseCoin"], btc["quoteCoin"]) == ("BTC", "USDT")
    assert btc["launchTime"] == "1585526400000" and btc["deliveryTime"] == "0" and btc["priceScale"] == "2"
    spot = get(http, sim, "/v5/market/instruments-info", category="spot")["result"]["list"]
    assert len(spot) == 3 and all("launchTime" not in i and "contractType" not in i for i in spot)
    inverse = get(http, sim, "/v5/market/instruments-info", category="inverse")["result"]["list"]
    assert {i["contractType"] for i in inverse} == {"InversePerpetual"}
    one = get(http, sim, "/v5/market/instruments-info", category="linear", symbol="SOLUSDT")["result"]["list"]
    assert [i["symbol"] for i in one] == ["SOLUSDT"]
    none = get(http, sim, "/v5/market/instruments-info", category="linear", symbol="NOPEUSDT")
    assert none["retCode"] == 0 and none["result"]["list"] == []
    assert get(http, sim, "/v5/market/instruments-info", category="option")["retCode"] == 10001
    assert get(http, sim, "/v5/market/instruments-info", limit=1001)["retCode"] == 10001


def test_instruments_info_pagination(sim: BybitSimulator, http: requests.Session) -> None:
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        result = get(http, sim, "/v5/market/instruments-info", category="linear", limit=2, cursor=cursor)["result"]
        assert len(result["list"]) <= 2
        seen += [i["symbol"] for i in result["list"]]
        cursor = result["nextPageCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(DEFAULT_INSTRUMENTS) and len(seen) == 3


def test_server_time_and_unknown_path(sim: BybitSimulator, http: requests.Session) -> None:
    result = get(http, sim, "/v5/market/time")["result"]
    assert result == {"timeSecond": str(NOW // 1000), "timeNano": str(NOW * 1_000_000)}
    response = http.get(sim.url + "/v5/market/nope", timeout=5)
    assert response.status_code == 404 and "retMsg" in response.json()


def test_keep_alive_connection_is_reused(sim: BybitSimulator) -> None:
    conn = http_client.HTTPConnection(sim.url.removeprefix("http://"), timeout=5)
    try:
        for _ in range(3):  # three requests over one socket
            conn.request("GET", "/v5/market/time")
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["retCode"] == 0
            assert not response.will_close
    finally:
        conn.close()


# ------------------------------------------------------------------- faults
@pytest.mark.parametrize(
    ("kind", "status", "ret_code", "text"),
    [
        ("10006", 200, 10006, "Too many visits!"),
        ("10000", 200, 10000, "Server Timeout"),
        ("10016", 200, 10016, "Server error"),
        ("10001", 200, 10001, "params error"),
        ("429", 429, None, None),
        ("502", 502, None, "Bad Gateway"),
        ("403", 403, None, "access too frequent"),
    ],
)
def test_fault_responses(sim: BybitSimulator, http: requests.Session, kind: str, status: int,
                         ret_code: int | None, text: str | None) -> None:
    sim.inject(kind)
    response = http.get(sim.url + KLINE, params={"symbol": "BTCUSDT", "interval": "5"}, timeout=5)
    assert response.status_code == status
    if ret_code is not None:
        assert response.json()["retCode"] == ret_code and response.json()["retMsg"] == text
    elif text is not None:
        assert response.text == text
    if kind == "10006":
        reset = int(response.headers["X-Bapi-Limit-Reset-Timestamp"])
        assert reset < time.time() * 1000  # already in the past
    # The fault was one-shot and is recorded.
    assert len(kline(http, sim, limit=1)) == 1
    assert [(r.status, r.fault) for r in sim.kline_requests()] == [(status, kind), (200, None)]


def test_badjson_and_truncated(sim: BybitSimulator, http: requests.Session) -> None:
    sim.inject("badjson", "truncated")
    url, params = sim.url + KLINE, {"symbol": "BTCUSDT", "interval": "5", "limit": 10}
    bad = http.get(url, params=params, timeout=5)
    assert bad.status_code == 200 and bad.text.lstrip().startswith("<")
    cut = http.get(url, params=params, timeout=5)
    assert cut.status_code == 200 and cut.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        cut.json()
    whole = http.get(url, params=params, timeout=5)
    assert whole.text.startswith(cut.text) and len(cut.text) == len(whole.text) // 2


def test_slow_fault_times_out_client_and_stop_does_not_hang(sim: BybitSimulator, http: requests.Session) -> None:
    sim.inject("slow:1")
    began = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(sim.url + "/v5/market/time", timeout=0.3)
    assert get(http, sim, "/v5/market/time")["retCode"] == 0  # next request is fine
    # A generous client waits and gets a normal answer.
    sim.inject("slow:0.5")
    assert get(http, sim, "/v5/market/time")["retCode"] == 0
    assert time.monotonic() - began >= 0.8
    assert [r.fault for r in sim.requests] == ["slow:1", None, "slow:0.5"]
    sim.inject("slow:30")
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(sim.url + "/v5/market/time", timeout=0.2)
    began = time.monotonic()
    sim.stop()
    assert time.monotonic() - began < 2


def test_inject_queue_order_and_validation(sim: BybitSimulator, http: requests.Session) -> None:
    sim.inject("502", "10016")
    statuses = [http.get(sim.url + "/v5/market/time", timeout=5) for _ in range(3)]
    assert [r.status_code for r in statuses] == [502, 200, 200]
    assert statuses[1].json()["retCode"] == 10016 and statuses[2].json()["retCode"] == 0
    with pytest.raises(ValueError, match="nonsense"):
        sim.inject("nonsense")
    with pytest.raises(ValueError, match="slow:x"):
        sim.inject("slow:x")
    assert set(FAULT_KINDS) == {"10006", "10000", "10016", "5004", "10018", "10001", "429", "502", "403",
                                "badjson", "truncated", "slow"}


def test_fail_every_cycles_kinds_and_yields_to_injection(http: requests.Session) -> None:
    simulator = BybitSimulator(fail_every=3, fail_kinds=["502", "10006"])
    simulator.set_now(NOW)
    simulator.start()
    try:
        for _ in range(9):
            http.get(simulator.url + "/v5/market/time", timeout=5)
        faults = [r.fault for r in simulator.requests]
        assert faults == [None, None, "502", None, None, "10006", None, None, "502"]
        simulator.inject("403")  # request 10 is injected even though not on the schedule
        assert http.get(simulator.url + "/v5/market/time", timeout=5).status_code == 403
        assert [r.status for r in simulator.requests][2::3] == [502, 200, 502]
    finally:
        simulator.stop()


# ------------------------------------------------------------ control plane
def test_control_endpoints(sim: BybitSimulator, http: requests.Session) -> None:
    base = sim.url
    assert http.post(base + "/_sim/faults", json={"queue": ["502", "10006"]}, timeout=5).status_code == 200
    assert http.get(base + "/v5/market/time", timeout=5).status_code == 502
    assert http.get(base + "/v5/market/time", timeout=5).json()["retCode"] == 10006
    assert http.post(base + "/_sim/now", json={"ms": 1_735_689_600_000}, timeout=5).status_code == 200
    assert get(http, sim, "/v5/market/time")["result"]["timeSecond"] == "1735689600"
    assert opens(kline(http, sim, limit=1)) == [1_735_689_600_000]
    outage = {"symbol": "BTCUSDT", "start_ms": 1_735_689_600_000 - 2 * FIVE, "end_ms": 1_735_689_600_000}
    assert http.post(base + "/_sim/outages", json=outage, timeout=5).status_code == 200
    assert opens(kline(http, sim, limit=2)) == [1_735_689_600_000, 1_735_689_600_000 - 3 * FIVE]
    records = http.get(base + "/_sim/requests", timeout=5).json()
    assert [(r["path"], r["status"], r["fault"]) for r in records] == [
        ("/v5/market/time", 502, "502"), ("/v5/market/time", 200, "10006"), ("/v5/market/time", 200, None),
        (KLINE, 200, None), (KLINE, 200, None)]
    assert records[-1]["params"] == {"category": "linear", "symbol": "BTCUSDT", "interval": "5", "limit": "2"}
    assert http.delete(base + "/_sim/requests", timeout=5).status_code == 200
    assert http.get(base + "/_sim/requests", timeout=5).json() == [] and sim.requests == []
    # Back to the real clock.
    assert http.post(base + "/_sim/now", json={"ms": None}, timeout=5).status_code == 200
    assert abs(int(get(http, sim, "/v5/market/time")["time"]) - time.time() * 1000) < 60_000
    # Bad control input is a 400, and never consumes a fault.
    assert http.post(base + "/_sim/faults", json={"queue": ["bogus"]}, timeout=5).status_code == 400
    assert http.post(base + "/_sim/outages", json={"symbol": "BTCUSDT"}, timeout=5).status_code == 400
    assert http.post(base + "/_sim/outages", json={**outage, "symbol": "XXX"}, timeout=5).status_code == 400


# ------------------------------------------------------------------- specs
def test_parse_instrument_spec() -> None:
    assert parse_instrument_spec("NEWUSDT:2025-01-15") == ("NEWUSDT", 1_736_899_200_000)
    assert parse_instrument_spec("NEWUSDT:2025-01-15T08:00:00Z") == ("NEWUSDT", 1_736_928_000_000)
    for bad, named in [("NEWUSDT:2025-13-15", "2025-13-15"), ("NEWUSDT", "NEWUSDT"),
                       ("newusdt:2025-01-15", "newusdt"), (":2025-01-15", ":2025-01-15")]:
        with pytest.raises(ValueError, match=named):
            parse_instrument_spec(bad)


def test_parse_outage_spec() -> None:
    assert parse_outage_spec("BTCUSDT:2025-01-10T00:00Z/2025-01-10T06:00Z") == (
        "BTCUSDT", 1_736_467_200_000, 1_736_488_800_000, None, None)  # never heals
    for bad, named in [("BTCUSDT:2025-01-10T06:00Z/2025-01-10T00:00Z", "2025-01-10T06:00Z"),
                       ("BTCUSDT:2025-01-10T00:00Z/2025-01-10T00:00Z", "2025-01-10T00:00Z"),
                       ("BTCUSDT:2025-01-10T00:00Z", "BTCUSDT:2025-01-10T00:00Z"),
                       ("BTCUSDT:2025-01-10T00:00Z/later", "later"),
                       ("BTCUSDT/2025-01-10", "BTCUSDT/2025-01-10")]:
        with pytest.raises(ValueError, match=named):
            parse_outage_spec(bad)
