"""`kline-pipeline export` and GET /api/klines: the stored rows, the simulator's truth, the manifest's proof."""

import csv
import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import requests

from kline_pipeline.api import create_app
from kline_pipeline.cli import main
from kline_pipeline.export import TIMEFRAMES, day_counts
from kline_pipeline.gaps import gap_report
from kline_pipeline.ingest import day_start, ingest_days
from kline_pipeline.models import to_ms
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline_tests.conftest import NOW
from kline_pipeline_tests.helpers import serve

UTC = timezone.utc
JAN1 = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = [JAN1.date() + timedelta(days=i) for i in range(3)]
INTERVAL = {"5m": "5", **{r.timeframe: r.bybit_interval for r in ROLLUPS}}


@pytest.fixture
def cli_env(monkeypatch, tmp_path, kline_store, database_url, frozen_clock):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
    return kline_store


@pytest.fixture
def three_days(cli_env, bybit, simulator):
    """What a backfill of 1-3 January leaves: the raw days and their six rollups."""
    ingest_days(bybit=bybit, store=cli_env, symbol="BTCUSDT", days=DAYS, now=NOW)
    for rollup in ROLLUPS:
        cli_env.refresh_rollup(rollup=rollup.table, symbol="BTCUSDT", start=JAN1, end=JAN1 + timedelta(days=3))
    return cli_env


def export(tmp_path, name: str, timeframe: str, *extra: str, symbol: str = "BTCUSDT",
           start: str = "2025-01-01T00:00:00Z", end: str = "2025-01-04T00:00:00Z") -> int:
    return main(["export", "--symbol", symbol, "--timeframe", timeframe, "--start", start, "--end", end,
                 "--out", str(tmp_path / name), *extra])


def read_rows(path) -> list[tuple]:
    """(epoch ms, open, high, low, close, volume) of an exported file, values as Decimal."""
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            reader = csv.reader(f)
            assert next(reader) == ["date", "open", "high", "low", "close", "volume"]
            return [(to_ms(datetime.fromisoformat(r[0])), *map(Decimal, r[1:])) for r in reader]
    table = pq.read_table(path) if path.suffix == ".parquet" else feather.read_table(path)
    assert table.column_names == ["date", "open", "high", "low", "close", "volume"]
    assert str(table.schema.field("date").type) == "timestamp[ms, tz=UTC]"
    return [(to_ms(r["date"]), *(Decimal(repr(r[c])) for c in ("open", "high", "low", "close", "volume")))
            for r in table.to_pylist()]


@pytest.mark.parametrize("fmt", [".parquet", ".feather", ".csv"])
def test_export_equals_the_stored_rows_and_the_simulators_truth(three_days, simulator, tmp_path, fmt, capsys):
    for timeframe in TIMEFRAMES:
        table = "price_klines" if timeframe == "5m" else f"price_klines_{timeframe}"
        time_column = "timestamp" if timeframe == "5m" else "bucket"
        assert export(tmp_path, f"btc_{timeframe}{fmt}", timeframe) == 0
        rows = read_rows(tmp_path / f"btc_{timeframe}{fmt}")
        with three_days.engine().connect() as conn:
            db = [(to_ms(r[0]), *r[1:]) for r in conn.exec_driver_sql(
                f"SELECT {time_column}, open, high, low, close, volume FROM {table} WHERE symbol = 'BTCUSDT' "
                f"ORDER BY 1")]
        truth = [(int(r[0]), *map(Decimal, r[1:6])) for r in simulator.candles(
            "BTCUSDT", to_ms(JAN1), to_ms(JAN1 + timedelta(days=3)), INTERVAL[timeframe])]
        assert len(rows) == 3 * 86_400 // int(TIMEFRAMES[timeframe].total_seconds())
        assert rows == db == truth, timeframe  # Decimal equality: exact in every format
        manifest = json.loads((tmp_path / f"btc_{timeframe}{fmt}.manifest.json").read_text())
        assert manifest["rows"] == len(rows) and manifest["timeframe"] == timeframe
        assert manifest["sha256"] == hashlib.sha256((tmp_path / f"btc_{timeframe}{fmt}").read_bytes()).hexdigest()
        assert f"{len(rows)} {timeframe} candles of BTCUSDT" in capsys.readouterr().out


def test_the_manifest_counts_equal_the_gap_report(cli_env, bybit, simulator, tmp_path):
    """NEWUSDT lists on 15 January at 08:00; an exchange outage on the 16th; the range ends in the
    still-open day 1 March (NOW is 12:02)."""
    listing_day = datetime(2025, 1, 15, tzinfo=UTC)
    simulator.add_outage("NEWUSDT", to_ms(listing_day + timedelta(days=1, hours=10)),
                         to_ms(listing_day + timedelta(days=1, hours=11)))
    days = [date(2025, 1, 14), date(2025, 1, 15), date(2025, 1, 16), date(2025, 3, 1)]
    ingest_days(bybit=bybit, store=cli_env, symbol="NEWUSDT", days=days, now=NOW)
    for start, end in [("2025-01-14T00:00:00Z", "2025-01-17T00:00:00Z"), ("2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z")]:
        assert export(tmp_path, "new.csv", "5m", symbol="NEWUSDT", start=start, end=end) == 0
        manifest = json.loads((tmp_path / "new.csv.manifest.json").read_text())
        lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
        report = gap_report(cli_env, symbol="NEWUSDT", start=lo, end=hi, now=NOW)
        assert manifest["totals"] == {"expected": report.expected, "present": report.present, **report.totals}
        assert manifest["gaps"] == report.to_json()["gaps"] and manifest["complete"] is True
        assert manifest["listing"] == "2025-01-15T08:00:00+00:00"
        for entry in manifest["days"]:  # each day as the gap report of that day alone counts it
            day = date.fromisoformat(entry["day"])
            alone = gap_report(cli_env, symbol="NEWUSDT", start=max(lo, day_start(day)),
                               end=min(hi, day_start(day) + timedelta(days=1)), now=NOW)
            assert {k: entry[k] for k in ("expected", "present", *alone.totals)} == {
                "expected": alone.expected, "present": alone.present, **alone.totals}, entry
            assert entry["rows"] == alone.present
        if start.startswith("2025-01-14"):
            assert [d["not_listed"] for d in manifest["days"]] == [288, 96, 0]
            assert [d["exchange_outage"] for d in manifest["days"]] == [0, 0, 12]
        else:
            assert manifest["days"][0]["not_yet_closed"] == 144 == day_counts(report)[date(2025, 3, 1)]["not_yet_closed"]


def test_a_range_with_missing_candles_is_refused_and_nothing_is_written(three_days, tmp_path, capsys):
    with three_days.engine().begin() as conn:  # lose half an hour by hand
        conn.exec_driver_sql("DELETE FROM price_klines WHERE symbol = 'BTCUSDT' AND timestamp >= '2025-01-02 03:00+00' "
                             "AND timestamp < '2025-01-02 03:30+00'")
    assert export(tmp_path, "btc.parquet", "5m") == 1
    err = capsys.readouterr().err
    assert "6 candle(s) missing" in err and "2025-01-02 03:00..2025-01-02 03:30" in err and "--allow-missing" in err
    assert "kline-pipeline backfill --symbol BTCUSDT --start 2025-01-02T00:00:00Z --end 2025-01-03T00:00:00Z --missing --wait" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    assert export(tmp_path, "btc.parquet", "5m", "--allow-missing") == 0
    manifest = json.loads((tmp_path / "btc.parquet.manifest.json").read_text())
    assert manifest["allow_missing"] is True and manifest["complete"] is False
    assert manifest["totals"]["missing"] == 6 and manifest["rows"] == 3 * 288 - 6
    assert [d["missing"] for d in manifest["days"]] == [0, 6, 0]


@pytest.mark.parametrize(("args", "message"), [
    (["--timeframe", "2h"], "--timeframe: timeframe '2h' is not stored: use one of 5m, 15m, 30m, 1h, 4h, 12h, 1d"),
    (["--out", "btc.xlsx"], "has extension '.xlsx': use .parquet, .feather, .csv"),
    (["--out", "missing/btc.csv"], "does not exist"),
    (["--timeframe", "1h", "--start", "2025-01-01T00:05:00Z"],
     "--start: start 2025-01-01T00:05:00+00:00 is not on the 1h grid (UTC); use e.g. 2025-01-01T00:00:00Z"),
    (["--start", "2025-01-01"], "--start: '2025-01-01' has no UTC offset"),
    (["--symbol", "btc-usdt"], "invalid symbol 'btc-usdt'"),
])
def test_bad_export_arguments_exit_2_naming_the_value(three_days, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    base = {"--symbol": "BTCUSDT", "--timeframe": "5m", "--start": "2025-01-01T00:00:00Z",
            "--end": "2025-01-02T00:00:00Z", "--out": "btc.csv"}
    base.update(dict(zip(args[::2], args[1::2])))
    assert main(["export", *[x for kv in base.items() for x in kv]]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_api_klines_json_and_csv_with_completeness(three_days, tmp_path):
    with serve(create_app(instance=object(), store=three_days, now=lambda: NOW)) as api:
        params = {"symbol": "BTCUSDT", "timeframe": "1h", "start": "2025-01-01T00:00:00Z", "end": "2025-01-03T00:00:00Z"}
        doc = requests.get(f"{api}/api/klines", params=params, timeout=15).json()
        assert export(tmp_path, "btc.csv", "1h", end="2025-01-03T00:00:00Z") == 0
        with open(tmp_path / "btc.csv", newline="") as f:
            exported = list(csv.DictReader(f))
        assert doc["rows"] == exported and len(exported) == 48  # the same rows, decimals as stored
        assert doc["completeness"]["complete"] is True and doc["completeness"]["present"] == 2 * 288
        text = requests.get(f"{api}/api/klines", params=params, headers={"Accept": "text/csv"}, timeout=15)
        assert text.headers["content-type"].startswith("text/csv")
        assert text.text == (tmp_path / "btc.csv").read_text()
        assert text.headers["x-kline-complete"] == "true" and text.headers["x-kline-missing"] == "0"
        bad = requests.get(f"{api}/api/klines", params={**params, "timeframe": "2h"}, timeout=15)
        assert bad.status_code == 400 and bad.json()["field"] == "timeframe" and "2h" in bad.json()["error"]
        missing = requests.get(f"{api}/api/klines", params={k: v for k, v in params.items() if k != "end"}, timeout=15)
        assert missing.status_code == 400 and missing.json()["field"] == "end"


def test_bench_export_prints_its_figures():
    """bench/bench_export.py at a tiny size: it runs and prints candles/s and peak RSS per format."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "bench_export.py"
    out = subprocess.run([sys.executable, str(script), "--days", "4", "--repeat", "2"], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    result = json.loads(out.splitlines()[-1].removeprefix("RESULT "))
    assert [(e["format"], e["days"], e["candles"], e["repeats"]) for e in result["exports"]] == [
        (f, d, d * 288, 2) for d in (1, 4) for f in ("parquet", "feather", "csv")]
    assert all(e["candles_per_s"] > 0 and e["peak_rss_mb"] > 0 for e in result["exports"])
    # The database runs on this machine (the tests' PostgreSQL): its backends' CPU is counted.
    assert all(e["cpu_s"] > 0 and e["cpu_server_s"] is not None for e in result["exports"])
    assert "candles/s" in out and "peak RSS MB" in out and "CPU s" in out


def test_the_manifest_of_a_delisted_symbol_names_its_delisting_and_the_days_after_it(cli_env, bybit, simulator, tmp_path):
    """A symbol delisted at noon on 2 January: the manifest carries Bybit's delivery time, and the
    afternoon and the day after count as delisted, not missing, so the export is complete."""
    delisted = JAN1 + timedelta(days=1, hours=12)
    simulator.add_instrument("LUNAUSDT", to_ms(JAN1 - timedelta(days=30)))
    simulator.delist("LUNAUSDT", to_ms(delisted))
    ingest_days(bybit=bybit, store=cli_env, symbol="LUNAUSDT", days=DAYS, now=NOW)
    assert export(tmp_path, "luna.csv", "5m", symbol="LUNAUSDT") == 0
    manifest = json.loads((tmp_path / "luna.csv.manifest.json").read_text())
    assert manifest["delisting"] == delisted.isoformat() and manifest["complete"] is True
    assert [(d["day"], d["present"], d["delisted"]) for d in manifest["days"]] == [
        ("2025-01-01", 288, 0), ("2025-01-02", 144, 144), ("2025-01-03", 0, 288)]


@pytest.mark.parametrize("fmt", [".parquet", ".feather", ".csv"])
def test_many_small_chunks_over_several_connections_give_the_same_file(three_days, tmp_path, monkeypatch, fmt):
    """Chunks of 100 rows read by two connections on one snapshot: the same rows as one chunk (the
    same bytes for CSV; Parquet and Feather files hold one row group / record batch per chunk)."""
    from kline_pipeline import export_stream

    assert export(tmp_path, f"one{fmt}", "5m") == 0
    monkeypatch.setattr(export_stream, "CHUNK_ROWS", 100)
    assert len(export_stream.windows(TIMEFRAMES["5m"], JAN1, JAN1 + timedelta(days=3))) == 9
    assert export(tmp_path, f"many{fmt}", "5m") == 0
    assert read_rows(tmp_path / f"many{fmt}") == read_rows(tmp_path / f"one{fmt}")
    if fmt == ".csv":
        assert (tmp_path / f"many{fmt}").read_bytes() == (tmp_path / f"one{fmt}").read_bytes()
    else:
        reader = pq.ParquetFile(tmp_path / f"many{fmt}") if fmt == ".parquet" else None
        assert (reader.num_row_groups if reader else len(feather.read_table(tmp_path / f"many{fmt}").to_batches())) == 9
    manifest = json.loads((tmp_path / f"many{fmt}.manifest.json").read_text())
    assert manifest["rows"] == 3 * 288
    assert manifest["sha256"] == hashlib.sha256((tmp_path / f"many{fmt}").read_bytes()).hexdigest()


def test_csv_times_are_iso_whatever_the_sessions_datestyle(three_days, tmp_path):
    """The CSV's times are PostgreSQL's ISO text of the timestamp: a session set to another
    DateStyle (psycopg2 sets ISO when it connects; a pool hook, role or driver may not) must not
    change them."""
    import sqlalchemy as sa

    engine = three_days.engine()

    def sql_datestyle(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cur:
            cur.execute("SET DateStyle = 'SQL, DMY'")

    engine.dispose()  # new connections, with the hook
    sa.event.listen(engine, "connect", sql_datestyle)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW DateStyle").scalar() == "SQL, DMY"
        assert export(tmp_path, "btc.csv", "5m", end="2025-01-01T01:00:00Z") == 0
    finally:
        sa.event.remove(engine, "connect", sql_datestyle)
        engine.dispose()
    lines = (tmp_path / "btc.csv").read_text().splitlines()
    assert len(lines) == 13 and lines[1].startswith("2025-01-01T00:00:00Z,")
    assert lines[-1].startswith("2025-01-01T00:55:00Z,")


def test_a_failure_in_a_reader_is_raised_and_every_connection_is_returned(three_days, monkeypatch):
    import threading

    from kline_pipeline import export_stream

    monkeypatch.setattr(export_stream, "CHUNK_ROWS", 100)
    query = {"params": {"symbol": "BTCUSDT", "timeframe": "5m"}, "stride": TIMEFRAMES["5m"],
             "start": JAN1, "end": JAN1 + timedelta(days=3)}
    converted: list[bytes] = []

    def convert(chunk: bytes) -> bytes:
        if len(converted) == 4:
            raise ValueError("chunk 5 is unreadable")
        converted.append(chunk)
        return chunk

    with pytest.raises(ValueError, match="chunk 5 is unreadable"):
        list(export_stream.copy_chunks(three_days, "export_csv_chunk.sql", convert=convert, **query))
    assert three_days.engine().pool.checkedout() == 0
    early = export_stream.copy_chunks(three_days, "export_csv_chunk.sql", convert=bytes, **query)
    first, holes = next(early)
    early.close()  # a consumer that stops after one chunk
    assert holes is None  # not asked for
    assert first.startswith(b"2025-01-01T00:00:00Z,") and first.count(b"\n") == 100
    assert three_days.engine().pool.checkedout() == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("export-copy-")]
    # The same through csv_chunks, as GET /api/klines reads it (a client that goes away).
    from kline_pipeline.export import csv_chunks

    chunks = csv_chunks(three_days, symbol="BTCUSDT", timeframe="5m", start=JAN1, end=JAN1 + timedelta(days=3),
                        workers=2)
    assert next(chunks).count(b"\n") == 100
    chunks.close()
    assert three_days.engine().pool.checkedout() == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("export-copy-")]


@pytest.mark.parametrize("fmt", ["csv", "arrow"])
def test_holes_read_with_the_rows_equal_the_gap_query_over_the_range(three_days, monkeypatch, fmt):
    """Windows of 100 candles: holes at the start, across a window's end, filling whole windows and at
    the end of the range, and candles moved off the grid by hand (a window with every row count but
    not every slot) come back from the windows as the one gap query over the range finds them."""
    from kline_pipeline import export, export_stream

    monkeypatch.setattr(export_stream, "CHUNK_ROWS", 100)
    cuts = ("('2025-01-01 00:00+00', '2025-01-01 00:15+00'), ('2025-01-01 07:55+00', '2025-01-01 08:30+00'), "
            "('2025-01-01 16:00+00', '2025-01-02 03:00+00'), ('2025-01-03 23:30+00', '2025-01-04 00:00+00')")
    with three_days.engine().begin() as conn:
        conn.exec_driver_sql("DELETE FROM price_klines p USING (VALUES " + cuts + ") AS c(lo, hi) "
                             "WHERE p.symbol = 'BTCUSDT' AND p.timestamp >= c.lo::timestamptz AND p.timestamp < c.hi::timestamptz")
        for was, now in (("2025-01-02 12:05+00", "2025-01-02 12:02+00"), ("2025-01-03 08:15+00", "2025-01-03 08:13:30.5+00")):
            conn.exec_driver_sql("UPDATE price_klines SET timestamp = %(now)s WHERE symbol = 'BTCUSDT' "
                                 "AND timestamp = %(was)s", {"was": was, "now": now})
    end = JAN1 + timedelta(days=3)
    sql_file, convert, starts = (("export_csv_chunk.sql", bytes, export._csv_starts) if fmt == "csv" else
                                 ("export_arrow_chunk.sql", export._arrow_table, export._arrow_starts))
    windows = list(export_stream.copy_chunks(three_days, sql_file, params={"symbol": "BTCUSDT", "timeframe": "5m"},
                                             stride=TIMEFRAMES["5m"], start=JAN1, end=end, convert=convert,
                                             starts=starts))
    assert len(windows) == 9
    merged = export_stream.merge_holes(holes for _, holes in windows if holes is not None)
    whole = three_days.gap_holes(symbol="BTCUSDT", start=JAN1, end=end)
    assert merged == whole
    spans = [(a.strftime("%d %H:%M:%S"), b.strftime("%d %H:%M:%S")) for a, b in whole.holes]
    # A moved candle leaves the step after it longer than 5 minutes: the query's hole follows it.
    assert spans == [("01 00:00:00", "01 00:15:00"), ("01 07:55:00", "01 08:30:00"), ("01 16:00:00", "02 03:00:00"),
                     ("02 12:07:00", "02 12:10:00"), ("03 08:18:30", "03 08:20:00"), ("03 23:30:00", "04 00:00:00")]
    assert whole.present == 3 * 288 - 3 - 7 - 132 - 6


def test_an_export_leaves_the_garbage_collector_as_it_found_it(three_days, tmp_path):
    """The export keeps the collector off older objects while it runs (export.py), and only then."""
    import gc

    assert gc.get_freeze_count() == 0
    assert export(tmp_path, "a.csv", "5m") == 0
    assert gc.get_freeze_count() == 0  # thawed again
    gc.freeze()  # frozen by the host process: left frozen
    try:
        assert export(tmp_path, "b.csv", "5m") == 0
        assert gc.get_freeze_count() > 0  # not thawed (frozen objects freed meanwhile leave it)
    finally:
        gc.unfreeze()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
