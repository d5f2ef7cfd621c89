"""`simulate-exchange --outage SYMBOL:START/END@HEAL`: an exchange outage that the exchange fills in
later, at a UTC time on its clock (`@2025-01-11T00:00Z`) or a delay after the start (`@+10m`), seen
over HTTP from the real command; bad heal values exit 2 naming the value."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from kline_pipeline.simulator import BybitSimulator, parse_outage_spec
from kline_pipeline_tests.processes import simulator_process

OUTAGE = "BTCUSDT:2025-01-10T00:00Z/2025-01-10T06:00Z"
START, END = 1_736_467_200_000, 1_736_488_800_000  # 2025-01-10 00:00 and 06:00 UTC
HEAL = 1_736_553_600_000  # 2025-01-11T00:00Z
FIVE = 300_000


def test_parse_outage_spec_with_a_heal_time_or_delay() -> None:
    assert parse_outage_spec(f"{OUTAGE}@2025-01-11T00:00Z") == ("BTCUSDT", START, END, HEAL, None)
    assert parse_outage_spec(f"{OUTAGE}@{HEAL}") == ("BTCUSDT", START, END, HEAL, None)
    assert parse_outage_spec(f"spot:{OUTAGE}@+90s") == ("spot:BTCUSDT", START, END, None, 90_000)
    assert parse_outage_spec(f"{OUTAGE}@+10m").heal_ms(1_000) == 601_000
    assert [parse_outage_spec(f"{OUTAGE}@+2{unit}").heals_after_ms for unit in "hd"] == [7_200_000, 172_800_000]
    assert parse_outage_spec(f"{OUTAGE}@2025-01-11").heal_ms(1_000) == HEAL  # a time does not move with the start


@pytest.mark.parametrize(("heal", "named"), [
    ("", "nothing after '@': expected a heal time, e.g. BTCUSDT:2025-01-10T00:00Z/2025-01-10T06:00Z@2025-01-11T00:00Z"),
    ("soon", "invalid heal time 'soon' in outage spec"),
    ("+0m", "invalid heal delay '+0m'"),
    ("+10", "invalid heal delay '+10'"),
    ("+1.5h", "invalid heal delay '+1.5h'"),
    ("+10w", "with a unit s, m, h or d, e.g. @+90s or @+10m"),
    ("2025-01-10T06:00Z", "heal time '2025-01-10T06:00Z' is not after the outage end '2025-01-10T06:00Z'"),
])
def test_a_bad_heal_exits_2_naming_the_value(heal: str, named: str) -> None:
    done = subprocess.run([sys.executable, "-m", "kline_pipeline.cli", "simulate-exchange", "--port", "1",
                           "--outage", f"{OUTAGE}@{heal}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and named in done.stderr, done.stderr
    assert done.stdout == ""  # nothing served


def outage_candles(url: str, at_ms: int) -> list[int]:
    """Open times of BTCUSDT's 5m candles in [START, END) served when the exchange's clock reads `at_ms`."""
    assert requests.post(f"{url}/_sim/now", json={"ms": at_ms}, timeout=5).status_code == 200
    body = requests.get(f"{url}/v5/market/kline", params={"category": "linear", "symbol": "BTCUSDT", "interval": "5",
                                                          "start": START, "end": END - 1, "limit": 1000}, timeout=5).json()
    assert body["retCode"] == 0 and body["time"] == at_ms
    return sorted(int(row[0]) for row in body["result"]["list"])


def test_an_outage_with_a_heal_time_is_served_from_then_on(tmp_path: Path) -> None:
    truth = [int(c[0]) for c in BybitSimulator().candles("BTCUSDT", START, END - 1, "5")]
    assert len(truth) == (END - START) // FIVE == 72
    with simulator_process(tmp_path / "sim.log", "--outage", f"{OUTAGE}@2025-01-11T00:00Z") as url:
        assert outage_candles(url, START + 7 * 3_600_000) == []  # the outage, seen the morning after
        assert outage_candles(url, HEAL - 1) == []
        assert sorted(outage_candles(url, HEAL)) == sorted(truth)  # filled in by the exchange
        assert outage_candles(url, HEAL + 86_400_000) == sorted(truth)
    log = (tmp_path / "sim.log").read_text()
    assert f"outage BTCUSDT: [{START}, {END}) ms, heals at {HEAL} ms (2025-01-11T00:00:00Z, exchange time)" in log


def test_an_outage_with_a_heal_delay_heals_that_long_after_the_start(tmp_path: Path) -> None:
    with simulator_process(tmp_path / "sim.log", "--outage", f"{OUTAGE}@+2h") as url:
        log = (tmp_path / "sim.log").read_text()
        heal = int(re.search(r"outage BTCUSDT: \[\d+, \d+\) ms, heals at (\d+) ms", log).group(1))
        started = requests.get(f"{url}/v5/market/time", timeout=5).json()["time"]  # the clock still runs
        assert 0 <= started - (heal - 7_200_000) < 60_000  # 2 h after the start (this test's slack: a minute)
        assert outage_candles(url, heal - 1) == []
        assert len(outage_candles(url, heal)) == 72
