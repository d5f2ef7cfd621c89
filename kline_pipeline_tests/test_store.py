"""The PostgreSQL store: URL handling, schema, and the per-day write path."""

from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from kline_pipeline.models import Candle, to_ms
from kline_pipeline.store import KlineStore, normalize_database_url, redact_url

UTC = timezone.utc
DAY = datetime(2025, 1, 1, tzinfo=UTC)


def candles(n: int, price: str = "100.5") -> list[Candle]:
    base = to_ms(DAY)
    return [Candle(base + i * 300_000, price, "101.25", "99.75", price, "1.5", "150.75") for i in range(n)]


def stored(store: KlineStore) -> list[tuple]:
    with store.engine().connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT symbol, timeframe, timestamp, open::text, volume::text FROM price_klines ORDER BY timestamp")]


@pytest.mark.parametrize(
    ("given", "wanted"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_urls_are_normalised_to_psycopg2(given, wanted):
    assert normalize_database_url(given) == wanted


def test_non_postgres_urls_are_refused_by_scheme():
    with pytest.raises(ValueError, match=r"unsupported database URL scheme 'mysql'"):
        normalize_database_url("mysql://u:secret@h/db")


def test_redacted_url_hides_the_password():
    assert "s3cret" not in redact_url("postgresql://me:s3cret@db.example:5432/kline")
    assert "me:***@db.example" in redact_url("postgresql://me:s3cret@db.example:5432/kline")


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("postgresql://me:s3cret@db:5432/kline", "postgresql://me:***@db:5432/kline"),
        # An unescaped @ in the password: everything up to the last @ is hidden.
        ("postgresql://me:s3c@ret@db:5432/kline", "postgresql://me:***@db:5432/kline"),
        ("postgresql://me@db/kline?password=s3cret&sslmode=require", "postgresql://me@db/kline?password=***&sslmode=require"),
        ("postgresql://me@db/kline?sslmode=require&sslpassword=keyPass1", "postgresql://me@db/kline?sslmode=require&sslpassword=***"),
        ("host=db user=me password='s3 cret' dbname=kline", "host=db user=me password=*** dbname=kline"),
        ("PGPASSWORD=s3cret psql -h db", "PGPASSWORD=*** psql -h db"),
        ("cannot reach postgresql://me@db/k?password=a:b: refused", "cannot reach postgresql://me@db/k?password=***: refused"),
        ('password authentication failed for user "me"', 'password authentication failed for user "me"'),
    ],
    ids=["userinfo", "unescaped @", "query password", "sslpassword", "libpq keyword", "PGPASSWORD", "in a message",
         "no credential"],
)
def test_every_form_of_credential_is_redacted(text, wanted):
    assert redact_url(text) == wanted


def test_configured_passwords_are_hidden_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "envSecret42")
    monkeypatch.setenv("KLINE_DATABASE_URL", "postgresql://me:url%40Secret@db/kline")
    assert redact_url("driver said: envSecret42 / url@Secret / url%40Secret") == "driver said: *** / *** / ***"


def test_an_unescaped_at_in_the_password_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as info:
        normalize_database_url("postgresql://me:s3c@ret@db:5432/kline")
    assert "unescaped '@'" in str(info.value) and "%40" in str(info.value)
    assert "s3c" not in str(info.value) and "ret@db" not in str(info.value)


def test_unreachable_database_names_the_url_without_its_password():
    store = KlineStore(database_url="postgresql://kline:hunter2@127.0.0.1:1/kline")
    with pytest.raises(ConnectionError) as info:
        store.engine()
    assert "127.0.0.1:1/kline" in str(info.value) and "hunter2" not in str(info.value)


def test_schema_is_applied_idempotently(kline_store):
    kline_store._apply_schema(kline_store.engine(), kline_store.resolved_url())
    with kline_store.engine().connect() as conn:
        cols = [r[0] for r in conn.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name='price_klines' ORDER BY ordinal_position")]
        key = conn.exec_driver_sql(
            "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = 'price_klines'::regclass AND i.indisprimary").scalar()
    assert cols == ["symbol", "timeframe", "timestamp", "open", "high", "low", "close", "volume", "turnover", "category"]
    assert sorted(key) == ["symbol", "timeframe", "timestamp"]


def test_writing_a_day_twice_changes_nothing_and_keeps_decimals_exact(kline_store):
    with kline_store.day_writer() as writer:
        first = writer.write_day(symbol="BTCUSDT", start=DAY, end=DAY + timedelta(days=1), candles=candles(288))
        again = writer.write_day(symbol="BTCUSDT", start=DAY, end=DAY + timedelta(days=1), candles=candles(288))
    assert (first.candles, first.changed, first.deleted) == (288, 288, 0)
    assert (again.candles, again.changed, again.deleted) == (288, 0, 0)
    rows = stored(kline_store)
    assert len(rows) == 288 and rows[0][1] == "5m" and rows[0][3] == "100.5" and rows[0][4] == "1.5"
    assert rows[0][2] == DAY


def test_changed_values_are_corrected_and_vanished_candles_removed(kline_store):
    with kline_store.day_writer() as writer:
        writer.write_day(symbol="BTCUSDT", start=DAY, end=DAY + timedelta(days=1), candles=candles(288))
        fixed = writer.write_day(
            symbol="BTCUSDT", start=DAY, end=DAY + timedelta(days=1), candles=candles(200, price="100.75"))
    assert (fixed.changed, fixed.deleted) == (200, 88)
    rows = stored(kline_store)
    assert len(rows) == 200 and {r[3] for r in rows} == {"100.75"}


def test_a_failed_day_leaves_nothing_behind(kline_store):
    bad = candles(10) + [Candle(to_ms(DAY) + 10 * 300_000, "not-a-number", "1", "1", "1", "1", "1")]
    with kline_store.day_writer() as writer:
        with pytest.raises(psycopg2.errors.InvalidTextRepresentation, match="numeric"):
            writer.write_day(symbol="BTCUSDT", start=DAY, end=DAY + timedelta(days=1), candles=bad)
        # The same connection is usable afterwards and the day can be written whole.
        ok = writer.write_day(symbol="BTCUSDT", start=DAY, end=DAY + timedelta(days=1), candles=candles(10))
    assert ok.changed == 10 and len(stored(kline_store)) == 10


def test_other_symbols_and_days_are_untouched(kline_store):
    next_day = DAY + timedelta(days=1)
    with kline_store.day_writer() as writer:
        writer.write_day(symbol="ETHUSDT", start=DAY, end=next_day, candles=candles(5))
        writer.write_day(symbol="BTCUSDT", start=DAY, end=next_day, candles=candles(5))
        writer.write_day(symbol="BTCUSDT", start=next_day, end=next_day + timedelta(days=1), candles=[])
        writer.write_day(symbol="ETHUSDT", start=DAY, end=next_day, candles=[])
    assert [r[0] for r in stored(kline_store)] == ["BTCUSDT"] * 5
    summary = kline_store.summary(symbol="BTCUSDT", start=DAY, end=next_day)
    assert summary.rows == 5 and summary.first_candle == DAY and len(summary.checksum) == 32
