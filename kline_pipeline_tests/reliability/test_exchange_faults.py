"""Exchange faults: a flaky exchange loses nothing; a failing one fails loudly and commits whole days only."""

import re
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient, BybitUnavailableError
from kline_pipeline.ingest import ingest_days
from kline_pipeline.models import to_ms
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import rollup_assets
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline_tests.conftest import LISTINGS, NOW

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 60
MIXED = ["10006", "502", "slow:6", "badjson", "truncated"]


def stored_rows(store, symbol: str) -> list[tuple]:
    with store.engine().connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT (extract(epoch FROM timestamp) * 1000)::bigint::text, open::text, high::text, low::text, "
            "close::text, volume::text, turnover::text FROM price_klines WHERE symbol = %(s)s ORDER BY timestamp",
            {"s": symbol})]


def test_one_request_in_five_failing_loses_and_duplicates_nothing(kline_store, monkeypatch, ledger):
    from kline_pipeline import clock

    later = datetime(2025, 6, 1, tzinfo=UTC)  # every one of the 60 days has closed
    monkeypatch.setattr(clock, "utcnow", lambda: later)
    sim = BybitSimulator(instruments=LISTINGS, now_ms=lambda: to_ms(later), fail_every=5, fail_kinds=MIXED)
    sim.start()
    try:
        # A 3 s timeout makes the 6 s stall a real timeout, as a 20 s stall is for the default 10 s,
        # while an ordinary reply on a busy CI machine stays well inside it (a 1 s timeout once
        # timed out a reply the simulator had not stalled: one retry more than faults injected).
        bybit = BybitClient(base_url=sim.url, timeout_seconds=3.0, backoff_base_seconds=0.05,
                            backoff_max_seconds=0.2, requests_per_second=1000.0)
        tallies: list[str] = []
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT", "ETHUSDT"])
            for symbol in ("BTCUSDT", "ETHUSDT"):
                last = (JAN1 + timedelta(days=DAYS - 1)).date().isoformat()
                result = dg.materialize(
                    [price_klines_5m, *rollup_assets], instance=instance,
                    resources={"bybit": bybit, "kline_store": kline_store},
                    tags={"dagster/asset_partition_range_start": f"2025-01-01|{symbol}",
                          "dagster/asset_partition_range_end": f"{last}|{symbol}"})
                assert result.success
                tallies += [e.user_message for e in instance.all_logs(result.run_id)
                            if e.step_key == "price_klines_5m" and e.user_message.startswith("Bybit: ")]
        faults = [r.fault for r in sim.requests if r.fault]
        lost = duplicates = 0
        assert set(faults) == set(MIXED)  # every kind of fault really happened
        # Each run's log says how many faults its step retried, and why (every one was retried).
        counted = [re.fullmatch(r"Bybit: (\d+) transient fault\(s\) retried: (.+)", t) for t in tallies]
        assert len(counted) == 2 and all(counted) and sum(int(m.group(1)) for m in counted) == len(faults)
        causes = {c.rsplit(" x", 1)[0] for m in counted for c in m.group(2).split(", ")}
        assert {"HTTP 502", "retCode 10006", "timeout", "a body that is not valid JSON"} <= causes
        for symbol in ("BTCUSDT", "ETHUSDT"):
            want = [tuple(r) for r in sim.candles(symbol, to_ms(JAN1), to_ms(JAN1 + timedelta(days=DAYS)))]
            got = stored_rows(kline_store, symbol)
            lost += len(set(want) - set(got))
            duplicates += len(got) - len(set(got))
            assert got == want  # every candle exactly once, exact values
            with kline_store.engine().connect() as conn:
                daily = conn.exec_driver_sql(
                    "SELECT (extract(epoch FROM bucket) * 1000)::bigint::text, open::text, high::text, low::text, "
                    "close::text, volume::text, turnover::text FROM price_klines_1d WHERE symbol = %(s)s "
                    "ORDER BY bucket", {"s": symbol}).all()
            native = sim.candles(symbol, to_ms(JAN1), to_ms(JAN1 + timedelta(days=DAYS)), "D")
            assert [tuple(r) for r in daily] == [tuple(r) for r in native]  # rollups match the exchange's own
    finally:
        sim.stop()
    ledger.record("exchange", f"1 request in 5 failing ({', '.join(MIXED)}), {DAYS} days x 2 symbols through "
                  "Dagster", f"{len(faults)} faults retried, each run's log naming its count and causes "
                  f"({tallies[0]}); all {2 * DAYS * 288} candles exact; 1d rollup equals "
                  "Bybit-style daily candles", rows_lost=lost, duplicates=duplicates)


@pytest.mark.parametrize("fault", ["502", "10016", "slow:2"])
def test_faults_that_never_stop_fail_naming_the_cause_with_whole_days_only(kline_store, fault, ledger):
    sim = BybitSimulator(instruments=LISTINGS, now_ms=lambda: to_ms(NOW))
    sim.start()
    try:
        # The listing and the first window (Jan 1 00:00 .. Jan 4 11:15) succeed; then the exchange breaks.
        sim.inject("ok", "ok", *[fault] * 10)
        bybit = BybitClient(base_url=sim.url, timeout_seconds=1.0, max_attempts=3, backoff_base_seconds=0.01,
                            backoff_max_seconds=0.02, requests_per_second=1000.0)
        days = [(JAN1 + timedelta(days=d)).date() for d in range(6)]
        with pytest.raises(BybitUnavailableError) as info:
            ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=days, now=NOW)
        cause = {"502": "HTTP 502", "10016": "retCode 10016", "slow:2": "no answer within 1 s"}[fault]
        assert f"after 3 attempts; last cause: {cause}" in str(info.value)
        counts = [kline_store.summary(symbol="BTCUSDT", start=JAN1 + timedelta(days=d),
                                      end=JAN1 + timedelta(days=d + 1)).rows for d in range(6)]
        assert counts == [288, 288, 288, 0, 0, 0]  # Jan 4 was half fetched: none of it is stored
    finally:
        sim.stop()
    ledger.record("exchange", f"`{fault}` on every request after the first window",
                  f"BybitUnavailableError naming `{cause}`; 3 whole days committed, the half-fetched day absent")
