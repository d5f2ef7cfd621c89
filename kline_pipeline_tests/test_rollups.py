"""Rollups: exact against a pandas oracle and the exchange's own candles, idempotent, per-day metadata."""

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pandas as pd
import psycopg2
import pytest

from kline_pipeline.assets import price_klines_5m
from kline_pipeline.ingest import ingest_days
from kline_pipeline.models import CANDLE_MS, Candle, to_ms
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import ROLLUPS, rollup_assets
from kline_pipeline_tests.conftest import NOW

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)
COLUMNS = "symbol, bucket, open, high, low, close, volume, turnover, candle_count"


def random_candles(rng: random.Random, start: datetime, days: int) -> list[Candle]:
    """Random valid candles with holes: ~15% missing at random and one whole hour missing."""
    out = []
    empty_hour = (start + timedelta(hours=13), start + timedelta(hours=14))
    for i in range(days * 288):
        ms = to_ms(start) + i * CANDLE_MS
        t = start + timedelta(milliseconds=i * CANDLE_MS)
        if rng.random() < 0.15 or empty_hour[0] <= t < empty_hour[1]:
            continue
        o, c = rng.randint(10_000, 20_000), rng.randint(10_000, 20_000)
        hi, lo = max(o, c) + rng.randint(0, 500), min(o, c) - rng.randint(0, 500)
        vol = rng.randint(0, 10**6)
        cents = lambda n: f"{n // 100}.{n % 100:02d}"  # noqa: E731
        out.append(Candle(ms, cents(o), cents(hi), cents(lo), cents(c), f"{vol / 1000:.3f}", f"{vol * 3}.5"))
    return out


def load(kline_store, symbol: str, candles: list[Candle], start: datetime, days: int) -> None:
    with kline_store.day_writer() as writer:
        for d in range(days):
            lo, hi = start + timedelta(days=d), start + timedelta(days=d + 1)
            writer.write_day(symbol=symbol, start=lo, end=hi, candles=[c for c in candles if lo <= c.start < hi])


def refresh_all(kline_store, symbol: str, start: datetime, end: datetime) -> None:
    for rollup in ROLLUPS:
        kline_store.refresh_rollup(rollup=rollup.table, symbol=symbol, start=start, end=end)


def table(kline_store, rollup, symbol: str) -> list[tuple]:
    with kline_store.engine().connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            f"SELECT {COLUMNS} FROM {rollup.table} WHERE symbol = %(s)s ORDER BY bucket", {"s": symbol})]


@pytest.fixture
def empty_rollups(kline_store):
    return kline_store  # emptied by the conftest fixture


def test_one_registry_names_the_six_rollups_and_the_sql_registries_agree_with_it(empty_rollups):
    """ROLLUPS is the one list: its names are the stable ones users query, and the registries the
    migrations seed in SQL (buckets, refresh policies) hold exactly its tables, strides and lookbacks."""
    assert [r.table for r in ROLLUPS] == ["price_klines_15m", "price_klines_30m", "price_klines_1h",
                                          "price_klines_4h", "price_klines_12h", "price_klines_1d"]
    assert [a.key.to_user_string() for a in rollup_assets] == [r.table for r in ROLLUPS]
    with empty_rollups.engine().connect() as conn:
        registry = conn.exec_driver_sql("SELECT name, stride, full_count FROM price_kline_rollups ORDER BY stride").all()
        jobs = conn.exec_driver_sql("SELECT name, refresh_lookback FROM price_kline_refresh_jobs ORDER BY job_id").all()
    assert [tuple(row) for row in registry] == [(r.table, r.stride, r.full_count) for r in ROLLUPS]
    assert [tuple(row) for row in jobs] == [(r.table, timedelta(minutes=r.lookback_minutes)) for r in ROLLUPS]


def test_rollups_equal_a_pandas_resample_oracle_on_data_with_holes(empty_rollups):
    store = empty_rollups
    candles = random_candles(random.Random(7), JAN1, 2)
    load(store, "RNDUSDT", candles, JAN1, 2)
    refresh_all(store, "RNDUSDT", JAN1, JAN1 + timedelta(days=2))
    frame = pd.DataFrame(
        {
            "open": [Decimal(c.open) for c in candles], "high": [Decimal(c.high) for c in candles],
            "low": [Decimal(c.low) for c in candles], "close": [Decimal(c.close) for c in candles],
            "volume": [Decimal(c.volume) for c in candles], "turnover": [Decimal(c.turnover) for c in candles],
            "count": [1] * len(candles),
        },
        index=pd.DatetimeIndex([c.start for c in candles]),
    )
    partial_seen = 0
    for rollup in ROLLUPS:
        agg = frame.resample(f"{rollup.minutes}min", origin="epoch", label="left", closed="left").agg(
            {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "turnover": "sum",
             "count": "sum"})
        agg = agg[agg["count"] > 0]
        want = [("RNDUSDT", ts.to_pydatetime(), r.open, r.high, r.low, r.close, r.volume, r.turnover, int(r["count"]))
                for ts, r in agg.iterrows()]
        got = table(store, rollup, "RNDUSDT")
        assert got == want, rollup.table
        partial_seen += sum(1 for row in got if row[-1] < rollup.full_count)
    assert partial_seen > 0
    one_hour = {row[1] for row in table(store, ROLLUPS[2], "RNDUSDT")}
    assert JAN1 + timedelta(hours=13) not in one_hour  # the empty hour has no bucket at all


def test_rollups_equal_the_exchanges_own_candles(empty_rollups, bybit, simulator):
    store = empty_rollups
    days = [JAN1.date() + timedelta(days=d) for d in range(3)]
    ingest_days(bybit=bybit, store=store, symbol="BTCUSDT", days=days, now=NOW)
    refresh_all(store, "BTCUSDT", JAN1, JAN1 + timedelta(days=3))
    for rollup in ROLLUPS:
        native = simulator.candles("BTCUSDT", to_ms(JAN1), to_ms(JAN1 + timedelta(days=3)), rollup.bybit_interval)
        got = [(to_ms(r[1]), *(str(x) for x in r[2:8])) for r in table(store, rollup, "BTCUSDT")]
        assert got == [(int(n[0]), *n[1:7]) for n in native], rollup.table
        assert {r[-1] for r in table(store, rollup, "BTCUSDT")} == {rollup.full_count}


def test_rerefresh_rewrites_nothing_and_a_change_touches_only_its_buckets(empty_rollups):
    store = empty_rollups
    candles = random_candles(random.Random(11), JAN1, 1)
    load(store, "RNDUSDT", candles, JAN1, 1)
    refresh_all(store, "RNDUSDT", JAN1, JAN1 + timedelta(days=1))

    def versions() -> dict:
        with store.engine().connect() as conn:
            return {(r.table, row[0]): (row[1], row[2:]) for r in ROLLUPS for row in conn.exec_driver_sql(
                f"SELECT bucket, xmin::text, high, candle_count FROM {r.table} WHERE symbol = 'RNDUSDT'")}

    before = versions()
    refresh_all(store, "RNDUSDT", JAN1, JAN1 + timedelta(days=1))
    assert versions() == before  # same row versions: nothing rewritten

    # Raise one candle's high above everything; delete every candle of another 15m bucket.
    target = candles[40]
    doomed = [c for c in candles if JAN1 + timedelta(hours=20) <= c.start < JAN1 + timedelta(hours=20, minutes=15)]
    assert doomed
    changed = [Candle(c.start_ms, c.open, "99999.99", c.low, c.close, c.volume, c.turnover) if c == target else c
               for c in candles if c not in doomed]
    load(store, "RNDUSDT", changed, JAN1, 1)
    refresh_all(store, "RNDUSDT", JAN1, JAN1 + timedelta(days=1))
    after = versions()
    touched = {key for key in before if after.get(key) != before[key]}
    expected = set()
    for rollup in ROLLUPS:
        for moment in (target.start, doomed[0].start):
            bucket = datetime.fromtimestamp(to_ms(moment) // (rollup.minutes * 60000) * rollup.minutes * 60, UTC)
            expected.add((rollup.table, bucket))
    assert touched == expected
    assert ("price_klines_15m", JAN1 + timedelta(hours=20)) not in after  # its candles are gone: bucket removed
    assert after[("price_klines_1d", JAN1)][1][0] == Decimal("99999.99")


def test_manual_refresh_by_sql_and_its_errors(empty_rollups):
    store = empty_rollups
    load(store, "RNDUSDT", random_candles(random.Random(3), JAN1, 1), JAN1, 1)
    raw = store.engine().raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("CALL refresh_price_klines('price_klines_1d', '2025-01-01 00:00+00', '2025-02-01 00:00+00')")
        raw.commit()
        cur.execute("SELECT MAX(bucket) FROM price_klines_1d WHERE symbol = 'RNDUSDT'")
        assert cur.fetchone()[0] == JAN1
        cur.execute("SELECT MAX(timestamp) FROM price_klines WHERE symbol = 'RNDUSDT' AND timeframe = '5m'")
        assert cur.fetchone()[0] is not None
        for call, message in [
            ("CALL refresh_price_klines('price_klines_2h', '2025-01-01', '2025-01-02')", "unknown rollup 'price_klines_2h'"),
            ("CALL refresh_price_klines('price_klines; DROP TABLE price_klines', '2025-01-01', '2025-01-02')",
             "unknown rollup"),
            ("CALL refresh_price_klines('price_klines_1h', '2025-01-02', '2025-01-01')", "start must be before end"),
            ("CALL refresh_price_klines('price_klines_1h', '2025-01-01', '2025-01-01')", "start must be before end"),
            ("CALL refresh_price_klines('price_klines_1h', '2025-01-01', '2025-01-02', 'btc')", "invalid symbol 'btc'"),
        ]:
            with pytest.raises(psycopg2.errors.InvalidParameterValue, match=message):
                cur.execute(call)
            raw.rollback()
        cur.execute("SELECT count(*) FROM price_klines WHERE symbol = 'RNDUSDT'")
        assert cur.fetchone()[0] > 0  # the table is intact
    finally:
        raw.close()


def test_a_window_refreshes_the_whole_buckets_it_overlaps(empty_rollups):
    with empty_rollups.engine().connect() as conn:
        span = conn.exec_driver_sql(
            "SELECT * FROM price_kline_rollup_span('price_klines_4h', '2025-01-01 05:00+00', '2025-01-01 09:00+00')").one()
        day = conn.exec_driver_sql(
            "SELECT * FROM price_kline_rollup_span('price_klines_1d', '2025-01-01 00:00+00', '2025-01-02 00:00+00')").one()
    assert tuple(span) == (JAN1 + timedelta(hours=4), JAN1 + timedelta(hours=12))
    assert tuple(day) == (JAN1, JAN1 + timedelta(days=1))  # a day window is exactly its own buckets


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT", "ETHUSDT", "NEWUSDT"])
        yield inst


def test_assets_report_buckets_and_partial_buckets(instance, bybit, empty_rollups, simulator, frozen_clock):
    result = dg.materialize([price_klines_5m, *rollup_assets], instance=instance, resources={
        "bybit": bybit, "kline_store": empty_rollups}, tags={"dagster/asset_partition_range_start": "2025-01-14|NEWUSDT",
                                                             "dagster/asset_partition_range_end": "2025-01-16|NEWUSDT"})
    meta = {(name, m.partition): {k: v.value for k, v in m.metadata.items()}
            for name in ("price_klines_15m", "price_klines_12h", "price_klines_1d")
            for m in result.asset_materializations_for_node(name)}
    # Each day partition shows its own buckets (NEWUSDT is listed on 15 January at 08:00).
    assert meta[("price_klines_1d", "2025-01-15|NEWUSDT")] == {
        "buckets": 1, "partial_buckets": 1, "full_bucket_candles": 288, "last_bucket": "2025-01-15T00:00:00+00:00",
        "run_partitions": 3, "run_buckets": 2}
    assert meta[("price_klines_1d", "2025-01-14|NEWUSDT")]["buckets"] == 0
    assert meta[("price_klines_1d", "2025-01-16|NEWUSDT")]["partial_buckets"] == 0
    assert meta[("price_klines_12h", "2025-01-15|NEWUSDT")]["partial_buckets"] == 1
    assert meta[("price_klines_12h", "2025-01-15|NEWUSDT")]["buckets"] == 2
    assert meta[("price_klines_15m", "2025-01-15|NEWUSDT")]["buckets"] == 64
    assert meta[("price_klines_15m", "2025-01-15|NEWUSDT")]["partial_buckets"] == 0
