"""Offline Bybit v5 market-data simulator.

Deterministic candles, Bybit's exact kline semantics (newest first, inclusive
bounds, partial in-progress candle, listing dates, outages) and injectable
faults, served over real HTTP so clients are tested exactly as in production.

Typical use in a test::

    sim = BybitSimulator()
    sim.set_now(1_736_944_496_789)
    url = sim.start()          # http://127.0.0.1:<free port>
    sim.inject("10006", "502")  # the next two market requests fail
    ...
    sim.stop()
"""

from .faults import DEFAULT_FAIL_KINDS, FAULT_KINDS
from .market import INTERVAL_MS
from .server import DEFAULT_INSTRUMENTS, BybitSimulator, RequestRecord, run_simulator
from .specs import parse_delisting_spec, parse_instrument_spec, parse_outage_spec

__all__ = [
    "DEFAULT_FAIL_KINDS",
    "DEFAULT_INSTRUMENTS",
    "FAULT_KINDS",
    "INTERVAL_MS",
    "BybitSimulator",
    "RequestRecord",
    "parse_delisting_spec",
    "parse_instrument_spec",
    "parse_outage_spec",
    "run_simulator",
]
