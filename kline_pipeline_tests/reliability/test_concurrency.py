"""Overlapping work at once: two backfills (no deadlock, no duplicates, exact data, one shared
request budget) and fifty identical API requests (one backfill)."""

import threading
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import requests

from kline_pipeline.api import create_app
from kline_pipeline.bybit import BybitClient
from kline_pipeline.ingest import ingest_days
from kline_pipeline.models import to_ms
from kline_pipeline_tests.conftest import NOW
from kline_pipeline_tests.helpers import serve

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)
RATE = 4.0  # requests per second, shared by both clients of this process


def test_overlapping_backfills_converge_without_deadlock_within_one_budget(kline_store, simulator, ledger):
    first = [(JAN1 + timedelta(days=d)).date() for d in range(0, 20)]
    second = [(JAN1 + timedelta(days=d)).date() for d in range(10, 30)]
    errors: list[BaseException] = []

    def backfill(days) -> None:
        client = BybitClient(base_url=simulator.url, requests_per_second=RATE)  # same rate: same limiter
        try:
            ingest_days(bybit=client, store=kline_store, symbol="BTCUSDT", days=days, now=NOW)
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=backfill, args=(days,)) for days in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock: a backfill never finished"
    assert errors == []
    with kline_store.engine().connect() as conn:
        total, distinct = conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT timestamp) FROM price_klines WHERE symbol = 'BTCUSDT'").one()
        got = conn.exec_driver_sql(
            "SELECT (extract(epoch FROM timestamp) * 1000)::bigint::text, open::text, high::text, low::text, "
            "close::text, volume::text, turnover::text FROM price_klines ORDER BY timestamp").all()
    assert total == distinct == 30 * 288
    assert [tuple(r) for r in got] == [tuple(r) for r in simulator.candles(
        "BTCUSDT", to_ms(JAN1), to_ms(JAN1 + timedelta(days=30)))]
    arrivals = sorted(r.at for r in simulator.requests if r.at >= started)
    # Token bucket: a burst of RATE, then RATE per second; no 1-second window holds more than 2 x RATE.
    busiest = max(sum(1 for b in arrivals if a <= b < a + 1.0) for a in arrivals)
    assert busiest <= 2 * RATE
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - RATE) / RATE - 0.1
    ledger.record("concurrency", "two overlapping backfills of one symbol at once (days 1-20 and 11-30)",
                  f"both finished, {total} rows = {distinct} distinct candles, exact; {len(arrivals)} requests "
                  f"at most {busiest} in any second (budget {RATE:g}/s + burst)", duplicates=total - distinct)


def test_fifty_identical_posts_at_once_create_one_backfill(kline_store, bybit, frozen_clock, ledger):
    body = {"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z"}
    barrier = threading.Barrier(50)
    answers: list[requests.Response] = []

    def client() -> None:
        barrier.wait()  # all 50 requests leave together
        answers.append(requests.post(f"{url}/api/backfill", json=body, timeout=60))

    with dg.instance_for_test() as instance:
        with serve(create_app(instance=instance, bybit=bybit, store=kline_store)) as url:
            threads = [threading.Thread(target=client) for _ in range(50)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
        backfills = instance.get_backfills()
    codes = sorted(a.status_code for a in answers)
    assert len(answers) == 50 and codes == [200] * 49 + [202]
    assert len(backfills) == 1 and {a.json()["backfill_id"] for a in answers} == {backfills[0].backfill_id}
    ledger.record("concurrency", "50 identical POST /api/backfill at the same moment (a client retrying, many "
                  "scripts)", "1 backfill created (one 202, 49 x 200 with its id `reused`)", duplicates=len(backfills) - 1)
