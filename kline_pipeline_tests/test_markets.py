"""Markets side by side: spot, linear and inverse candles of one symbol are different candles,
with the category in every key, table and report, and the default (linear) names unchanged."""

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from kline_pipeline.bybit import UnknownSymbolError
from kline_pipeline.gaps import gap_report
from kline_pipeline.ingest import ingest_days
from kline_pipeline.models import Candle, to_ms
from kline_pipeline.partitions import split_market, validate_symbol
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.sqlfiles import schema_files, sql_text
from kline_pipeline.store import KlineStore
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline_tests import helpers
from kline_pipeline_tests.conftest import NOW, throwaway_database

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = [date(2025, 1, 1), date(2025, 1, 2)]


def rows(store: KlineStore, sql: str, **params: object) -> list[tuple]:
    with store.engine().connect() as conn:
        return [tuple(r) for r in (conn.exec_driver_sql(sql, params) if params else conn.exec_driver_sql(sql))]


def candles(store: KlineStore, symbol: str) -> list[Candle]:
    """Every stored 5m candle of `symbol`."""
    return helpers.stored(store, symbol, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def truth(simulator: BybitSimulator, key: str) -> list[Candle]:
    """The exchange's candles of `key` over DAYS."""
    return helpers.truth(simulator, key, JAN1, JAN1 + timedelta(days=2))


@pytest.fixture
def spot(simulator):
    simulator.add_instrument("spot:BTCUSDT", to_ms(datetime(2021, 1, 1, tzinfo=UTC)))  # spot's own prices
    return simulator


def test_spot_and_linear_btcusdt_are_stored_side_by_side_exactly(spot, bybit, kline_store):
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=DAYS, now=NOW)
    linear_before = candles(kline_store, "BTCUSDT")
    ingest_days(bybit=bybit, store=kline_store, symbol="spot:BTCUSDT", days=DAYS, now=NOW)
    assert candles(kline_store, "BTCUSDT") == linear_before == truth(spot, "BTCUSDT")  # untouched by spot
    assert candles(kline_store, "spot:BTCUSDT") == truth(spot, "spot:BTCUSDT")
    assert truth(spot, "spot:BTCUSDT") != truth(spot, "BTCUSDT")  # two markets, two price series
    # The seed's verification SQL still counts the default market only.
    assert rows(kline_store, "SELECT count(*) FROM price_klines WHERE symbol = 'BTCUSDT' AND timeframe = '5m'") == [(576,)]
    assert rows(kline_store, "SELECT category, count(*) FROM price_klines GROUP BY 1 ORDER BY 1") == [
        ("linear", 576), ("spot", 576)]
    kline_requests = spot.kline_requests()
    assert {(r.params["category"], r.params["symbol"]) for r in kline_requests} == {("linear", "BTCUSDT"),
                                                                                   ("spot", "BTCUSDT")}
    for rollup in ROLLUPS:
        for market in ("BTCUSDT", "spot:BTCUSDT"):
            kline_store.refresh_rollup(rollup=rollup.table, symbol=market, start=JAN1, end=JAN1 + timedelta(days=2))
    daily = rows(kline_store, "SELECT symbol, category, open::text, close::text FROM price_klines_1d "
                 "WHERE bucket = '2025-01-01' ORDER BY symbol")
    by_market = {m: candles(kline_store, m) for m in ("BTCUSDT", "spot:BTCUSDT")}
    assert daily == [(m, split_market(m)[0], by_market[m][0].open, by_market[m][287].close)
                     for m in ("BTCUSDT", "spot:BTCUSDT")]
    listings = rows(kline_store, "SELECT symbol, category FROM price_kline_listings ORDER BY symbol")
    assert listings == [("BTCUSDT", "linear"), ("spot:BTCUSDT", "spot")]
    report = gap_report(kline_store, symbol="spot:BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=2), now=NOW)
    assert report.to_json()["category"] == "spot" and report.present == 576 and report.missing == 0


def test_a_symbol_listed_in_one_market_only_is_unknown_in_the_others(spot, bybit):
    spot.add_instrument("spot:ONLYSPOT", to_ms(JAN1))
    assert bybit.get_instrument(symbol="spot:ONLYSPOT").category == "spot"
    with pytest.raises(UnknownSymbolError, match="'ONLYSPOT' is not listed on Bybit \\(category linear\\)"):
        bybit.get_instrument(symbol="ONLYSPOT")


@pytest.mark.parametrize(("bad", "named"), [
    ("linear:BTCUSDT", "linear is the default market: write 'BTCUSDT'"),
    ("futures:BTCUSDT", "prefixed spot: or inverse:"),
    ("spot:btcusdt", "invalid symbol 'spot:btcusdt'"),
])
def test_a_malformed_market_is_refused_naming_it(bad: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        validate_symbol(bad)


def test_the_migration_keeps_existing_rows_as_linear(admin_url):
    with throwaway_database(admin_url, "kline_migrate") as url:
        old = [name for name in schema_files() if name < "schema_008"]
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # a database as the previous release left it
            with conn.connection.cursor() as cur:
                for name in old:
                    cur.execute(sql_text(name))  # no parameters: the files' % signs are literal
            conn.exec_driver_sql(
                "INSERT INTO price_klines VALUES ('BTCUSDT', '5m', '2025-01-01', 1, 2, 1, 2, 3, 4), "
                "('ETHUSDT', '5m', '2025-01-01', 1, 2, 1, 2, 3, 4)")
            conn.exec_driver_sql("INSERT INTO price_klines_1d VALUES ('BTCUSDT', '2025-01-01', 1, 2, 1, 2, 3, 4, 1)")
            # A listing written under BYBIT_CATEGORY=spot: its rows are migrated as linear, like all.
            conn.exec_driver_sql("INSERT INTO price_kline_listings (symbol, category, launch_time, checked_at) "
                                 "VALUES ('BTCUSDT', 'spot', '2020-01-01', now())")
        engine.dispose()
        store = KlineStore(database_url=url)  # applies every schema file, the new one included
        assert rows(store, "SELECT symbol, category FROM price_klines ORDER BY symbol") == [
            ("BTCUSDT", "linear"), ("ETHUSDT", "linear")]
        assert rows(store, "SELECT category FROM price_klines_1d") == [("linear",)]
        assert rows(store, "SELECT category FROM price_kline_listings") == [("linear",)]
        assert rows(store, "SELECT count(*) FROM price_klines WHERE symbol = 'BTCUSDT' AND timeframe = '5m'") == [(1,)]
        KlineStore._apply_schema(store, store.engine(), store.resolved_url())  # again: changes nothing
        assert rows(store, "SELECT symbol, category FROM price_klines ORDER BY symbol") == [
            ("BTCUSDT", "linear"), ("ETHUSDT", "linear")]
