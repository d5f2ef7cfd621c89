"""Helpers shared by test modules: what the store holds next to what the exchange serves, a server
for an ASGI app."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import uvicorn

from kline_pipeline.models import Candle, to_ms
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore

CANDLE_TABLES = ("price_klines", *(rollup.table for rollup in ROLLUPS))


def stored(store: KlineStore, symbol: str, start: datetime, end: datetime, *,
           table: str = "price_klines") -> list[Candle]:
    """The candles of `symbol` in `table` (the raw 5m candles, or a rollup's) opening in [start, end), oldest first."""
    if table not in CANDLE_TABLES:
        raise ValueError(f"unknown candle table {table!r}: allowed are {', '.join(CANDLE_TABLES)}")
    column = "timestamp" if table == "price_klines" else "bucket"
    raw_only = " AND timeframe = '5m'" if table == "price_klines" else ""
    with store.engine().connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT extract(epoch FROM {column})::bigint * 1000, open::text, high::text, low::text, close::text, "
            f"volume::text, turnover::text FROM {table} WHERE symbol = %(s)s AND {column} >= %(a)s "
            f"AND {column} < %(b)s{raw_only} ORDER BY 1", {"s": symbol, "a": start, "b": end})
        return [Candle(*r) for r in rows]


def truth(simulator: BybitSimulator, key: str, start: datetime, end: datetime, interval: str = "5") -> list[Candle]:
    """The exchange's final candles of `key` ("SYMBOL" or "spot:SYMBOL") of `interval` opening in [start, end)."""
    return [Candle(int(r[0]), *r[1:7]) for r in simulator.candles(key, to_ms(start), to_ms(end), interval)]


@contextmanager
def serve(app) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on a free 127.0.0.1 port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
