"""Candles out, with proof of completeness: `kline-pipeline export` and GET /api/klines.

Reads a symbol's stored candles of one timeframe (5m or a rollup, through the view
`price_klines_by_timeframe`, sql/schema_011_export.sql) over [start, end) and writes them to
Parquet, Feather (Arrow IPC) or CSV in freqtrade's column layout (date, open, high, low, close,
volume), next to a manifest `<file>.manifest.json`: per UTC day the expected, present,
exchange-outage, missing, not-listed and not-yet-closed 5m candles (the gap report's figures),
the listing, a SHA-256 of the file, the source and when it was made.

Streaming: the rows come in chunks of CHUNK_ROWS (one COPY each: text for CSV, fixed-width binary
read as arrays for Parquet and Feather),
read by WORKERS connections on one snapshot a few chunks ahead of the writer (export_stream.py), so
memory stays flat whatever the range.
A range with unexplained missing candles is refused before anything is written, unless
`allow_missing` (then recorded in the manifest). Files appear whole or not at all (written under a
temporary name, then renamed). Only reads the candle store.
"""

import gc
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as paipc
import pyarrow.parquet as pq

from kline_pipeline.export_stream import WORKERS, copy_chunks, merge_holes
from kline_pipeline.gaps import CAUSES, NOT_CLOSED, NOT_LISTED, GapReport, gap_report, missing_days
from kline_pipeline.ingest import DAY, day_start
from kline_pipeline.models import CANDLE_MS, to_ms
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.store import KlineStore, redact_url
from kline_pipeline.store_reads import GapHoles

TIMEFRAMES = {"5m": timedelta(minutes=5), **{r.timeframe: r.stride for r in ROLLUPS}}
FORMATS = {".parquet": "parquet", ".feather": "feather", ".csv": "csv"}
COLUMNS = ("date", "open", "high", "low", "close", "volume")
ARROW_SCHEMA = pa.schema([("date", pa.timestamp("ms", tz="UTC"))] + [(c, pa.float64()) for c in COLUMNS[1:]])
CSV_HEADER = ",".join(COLUMNS) + "\n"


class ExportError(ValueError):
    """Bad input: names the field and what is allowed (exit 2 / HTTP 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class IncompleteRange(Exception):
    """The range has unexplained missing candles (exit 1); nothing was written."""

    def __init__(self, report: GapReport) -> None:
        spans = [s for s in report.spans if s.cause == "missing"]
        shown = ", ".join(f"{s.start:%Y-%m-%d %H:%M}..{s.end:%Y-%m-%d %H:%M}" for s in spans[:5])
        more = f" and {len(spans) - 5} more spans" if len(spans) > 5 else ""
        days = missing_days(report)  # what `backfill --missing` launches: only these days
        fill = (f"kline-pipeline backfill --symbol {report.symbol} --start {days[0]}T00:00:00Z "
                f"--end {days[-1] + timedelta(days=1)}T00:00:00Z --missing --wait")
        super().__init__(
            f"{report.symbol}: {report.missing} candle(s) missing without an explanation in "
            f"{report.start:%Y-%m-%d %H:%M} .. {report.end:%Y-%m-%d %H:%M} UTC ({shown}{more}); nothing was written. "
            f"Fill them with `{fill}` (`kline-pipeline gaps` lists them), or export anyway with --allow-missing "
            "(recorded in the manifest)")
        self.report = report


def validate_timeframe(timeframe: object) -> str:
    if timeframe not in TIMEFRAMES:
        raise ExportError("timeframe", f"timeframe {timeframe!r} is not stored: use one of {', '.join(TIMEFRAMES)}")
    return str(timeframe)


def validate_grid(timeframe: str, start: datetime, end: datetime) -> None:
    """Both bounds on the timeframe's UTC grid, so a bucket is either wholly in the range or not."""
    stride_ms = int(TIMEFRAMES[timeframe].total_seconds() * 1000)
    for name, moment in (("start", start), ("end", end)):
        if to_ms(moment) % stride_ms:
            floor = datetime.fromtimestamp(to_ms(moment) // stride_ms * stride_ms / 1000, tz=moment.tzinfo)
            raise ExportError(name, f"{name} {moment.isoformat()} is not on the {timeframe} grid (UTC); "
                              f"use e.g. {floor.isoformat().replace('+00:00', 'Z')}")


def output_format(path: Path) -> str:
    """The format named by the extension of `path` (whose folder must exist)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError("out", f"--out {str(path)!r} has extension {path.suffix or 'none'!r}: use "
                          f"{', '.join(FORMATS)} (the format follows the extension)")
    if not path.parent.is_dir():
        raise ExportError("out", f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return fmt


def _csv_windows(store: KlineStore, *, symbol: str, timeframe: str, start: datetime, end: datetime,
                 workers: int, holes: bool) -> Generator[tuple[bytes | None, GapHoles | None], None, None]:
    return copy_chunks(store, "export_csv_chunk.sql", params={"symbol": symbol, "timeframe": timeframe},
                       stride=TIMEFRAMES[timeframe], start=start, end=end, convert=bytes,
                       starts=_csv_starts if holes else None, workers=workers)


def _csv_starts(chunk: bytes) -> np.ndarray | None:
    """The open times (epoch ms) of a CSV chunk's rows, read from the fixed-width ISO text each line
    starts with; None if a line does not start that way (a time off the whole second)."""
    data = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    firsts = np.concatenate(([0], ends[:-1] + 1))
    if not len(ends) or (ends - firsts < len("2025-01-01T00:00:00Z,")).any() or (data[firsts + 19] != ord("Z")).any():
        return None
    text = np.ascontiguousarray(data[firsts[:, None] + np.arange(19)])
    return text.view("S19").ravel().astype("datetime64[ms]").astype(np.int64)


def csv_chunks(store: KlineStore, *, symbol: str, timeframe: str, start: datetime, end: datetime,
               workers: int = 1) -> Iterator[bytes]:
    """The CSV body (no header): `2025-01-01T00:00:00Z,open,high,low,close,volume` lines, exact decimals."""
    windows = _csv_windows(store, symbol=symbol, timeframe=timeframe, start=start, end=end, workers=workers,
                           holes=False)
    try:
        yield from (chunk for chunk, _ in windows if chunk is not None)
    finally:
        windows.close()  # a reader that stops early (a client gone) ends the COPYs and returns the connections


# COPY's binary format (PostgreSQL docs, "COPY: Binary Format"): a 19-byte header, then per row a
# field count (int16) and each field as a length (int32) and its bytes, big-endian; an int16 -1 ends it.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00"
_HEADER_BYTES = 19
_ROW = np.dtype([("fields", ">i2")] + [part for column in COLUMNS
                                       for part in ((f"{column}_len", ">i4"), (column, ">i8" if column == "date" else ">f8"))])


def _arrow_table(chunk: bytes) -> pa.Table:
    """One COPY chunk of sql/export_arrow_chunk.sql as a table of ARROW_SCHEMA: every row has the
    same layout (six 8-byte fields), so the rows are read as one array, not parsed one by one."""
    body = len(chunk) - _HEADER_BYTES - 2
    # After the signature: flags (no OIDs) and header extension length, both zero.
    if (not chunk.startswith(_COPY_HEADER + bytes(8)) or body % _ROW.itemsize or chunk[-2:] != b"\xff\xff"):
        raise ValueError(f"unexpected COPY binary chunk of {len(chunk)} bytes")
    rows = np.frombuffer(chunk, dtype=_ROW, count=body // _ROW.itemsize, offset=_HEADER_BYTES)
    if (rows["fields"] != len(COLUMNS)).any() or any((rows[f"{c}_len"] != 8).any() for c in COLUMNS):
        raise ValueError("unexpected field count or width in a COPY binary chunk (a NULL value?)")
    return pa.Table.from_arrays([_column(rows[c], ARROW_SCHEMA.field(c).type) for c in COLUMNS], schema=ARROW_SCHEMA)


def _column(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A big-endian column as an Arrow array in the machine's order. From its buffer: `pa.array` on
    a NumPy array imports pandas on its first call (0.15 s of a 0.4 s export in a fresh process)."""
    native = values.astype(values.dtype.newbyteorder("="))
    return pa.Array.from_buffers(arrow_type, len(native), [None, pa.py_buffer(native)])


def _arrow_windows(store: KlineStore, *, symbol: str, timeframe: str, start: datetime, end: datetime,
                   workers: int, holes: bool) -> Iterator[tuple[pa.Table | None, GapHoles | None]]:
    """The rows as Arrow tables of ARROW_SCHEMA, one per window (read beside the database reads)."""
    return copy_chunks(store, "export_arrow_chunk.sql", params={"symbol": symbol, "timeframe": timeframe},
                       stride=TIMEFRAMES[timeframe], start=start, end=end, convert=_arrow_table,
                       starts=_arrow_starts if holes else None, workers=workers)


def _arrow_starts(table: pa.Table) -> np.ndarray:
    """The `date` column (epoch ms) of a table made by _arrow_table, from its buffer (no pandas)."""
    chunks = table.column("date").chunks
    return np.concatenate([np.frombuffer(c.buffers()[1], dtype="<i8", count=len(c), offset=c.offset * 8)
                           for c in chunks]) if chunks else np.empty(0, dtype=np.int64)


def _write_data(store: KlineStore, fmt: str, target: Path, **query: Any) -> tuple[int, str, GapHoles | None]:
    """Write the rows to `target` window by window; the number of rows, the file's SHA-256 and, for
    5m candles, the holes of the range as read with the rows (export_stream.py)."""
    rows = 0
    holes: list[GapHoles] = []
    with_holes = query["timeframe"] == "5m"
    if fmt == "csv":
        digest = hashlib.sha256(CSV_HEADER.encode())
        with open(target, "wb") as out:
            out.write(CSV_HEADER.encode())
            for chunk, window_holes in _csv_windows(store, workers=WORKERS, holes=with_holes, **query):
                holes += [window_holes] if window_holes is not None else []
                if chunk is not None:
                    out.write(chunk)
                    digest.update(chunk)  # hashed in the same pass, not read back
                    rows += chunk.count(b"\n")
        return rows, digest.hexdigest(), merge_holes(holes) if with_holes else None
    if fmt == "parquet":
        # Prices hardly repeat: dictionary encoding would only cost time.
        writer: pq.ParquetWriter | paipc.RecordBatchFileWriter = pq.ParquetWriter(target, ARROW_SCHEMA,
                                                                                   use_dictionary=False)
    else:  # Feather v2 is the Arrow IPC file format
        writer = paipc.new_file(str(target), ARROW_SCHEMA)
    with writer:
        for table, window_holes in _arrow_windows(store, workers=WORKERS, holes=with_holes, **query):
            holes += [window_holes] if window_holes is not None else []
            if table is not None and table.num_rows:  # a binary COPY of an empty window: header, trailer
                writer.write_table(table)
                rows += table.num_rows
        if not rows:
            writer.write_table(ARROW_SCHEMA.empty_table())
    return rows, _sha256(target), merge_holes(holes) if with_holes else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def day_counts(report: GapReport) -> dict[date, dict[str, int]]:
    """Per UTC day of the report: expected, present and each cause's candles (5m), as gaps counts them."""
    days: dict[date, dict[str, int]] = {}
    day = report.start.date()
    while day_start(day) < report.end:
        lo, hi = max(day_start(day), report.start), min(day_start(day) + DAY, report.end)
        days[day] = {"grid": (to_ms(hi) - to_ms(lo)) // CANDLE_MS, **{cause: 0 for cause in CAUSES}}
        day += timedelta(days=1)
    for span in report.spans:
        lo = span.start
        while lo < span.end:
            hi = min(span.end, day_start(lo.date()) + DAY)
            days[lo.date()][span.cause] += (to_ms(hi) - to_ms(lo)) // CANDLE_MS
            lo = hi
    for counts in days.values():
        grid = counts.pop("grid")
        counts["expected"] = grid - counts[NOT_LISTED] - counts[NOT_CLOSED]
        counts["present"] = grid - sum(counts[c] for c in CAUSES)
    return days


@dataclass(frozen=True)
class Export:
    path: Path
    manifest_path: Path
    rows: int
    manifest: dict[str, object]


def _package_version() -> str:
    try:
        return version("kline-pipeline")
    except PackageNotFoundError:
        return "unknown"


def _facts(store: KlineStore, query: dict[str, Any], now: datetime,
           holes: GapHoles | None = None) -> tuple[GapReport, dict[date, int]]:
    """The gap report of the range (from `holes` when the export read them) and the exported rows
    per day (for 5m: the present candles)."""
    report = gap_report(store, symbol=query["symbol"], start=query["start"], end=query["end"], now=now, holes=holes)
    if query["timeframe"] == "5m":
        return report, {day: counts["present"] for day, counts in day_counts(report).items()}
    return report, dict(store.query("export_day_rows.sql", query))


@contextmanager
def _older_objects_left_alone() -> Iterator[None]:
    """Python's garbage collector skips the objects that existed before (gc.freeze) until the end.

    Why: a process that imported Dagster holds ~160,000 objects, and each full collection walks
    them all (67 ms, measured); the export's own allocations set one off now and then, which cost a
    year's export a third of its time. What the export allocates is still collected. If something
    froze objects already (the host process, or an export running beside this one), it is left as
    it is: unfreezing would thaw theirs too."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def export_klines(store: KlineStore, *, symbol: str, timeframe: str, start: datetime, end: datetime, out: Path,
                  now: datetime, allow_missing: bool = False) -> Export:
    """Write the file and its manifest (see the module docstring); raises IncompleteRange (nothing
    written) when candles are missing and not `allow_missing`. Re-running rewrites the same rows."""
    with _older_objects_left_alone():
        return _export(store, symbol=symbol, timeframe=timeframe, start=start, end=end, out=out, now=now,
                       allow_missing=allow_missing)


def _export(store: KlineStore, *, symbol: str, timeframe: str, start: datetime, end: datetime, out: Path,
            now: datetime, allow_missing: bool) -> Export:
    timeframe = validate_timeframe(timeframe)
    validate_grid(timeframe, start, end)
    fmt = output_format(out)
    manifest_path = out.with_name(out.name + ".manifest.json")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    query = {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end}
    # 5m: the holes come with the rows (export_stream.py); the report then only adds what explains
    # them. A rollup's report (of its 5m candles) is read by a second connection while the rows are
    # written. A refusal removes the hidden partial file, so nothing is written.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-facts") as pool:
        facts = pool.submit(_facts, store, query, now) if timeframe != "5m" else None
        try:
            rows, sha256, holes = _write_data(store, fmt, partial, **query)
            report, per_day_rows = facts.result() if facts is not None else _facts(store, query, now, holes)
            if report.missing and not allow_missing:
                raise IncompleteRange(report)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    try:
        listing = store.listing(symbol)
        manifest = {
            "file": out.name, "format": fmt, "columns": list(COLUMNS),
            "symbol": symbol, "timeframe": timeframe, "start": start.isoformat(), "end": end.isoformat(),
            "rows": rows, "sha256": sha256,
            "made_at": now.isoformat(),
            "source": {"exchange": "bybit", "category": listing.category if listing else None,
                       "table": "price_klines" if timeframe == "5m" else f"price_klines_{timeframe}",
                       "database": redact_url(store.resolved_url()), "kline_pipeline": _package_version()},
            "listing": report.listing.isoformat() if report.listing else None,
            # Bybit's deliveryTime as recorded at ingest (None while the symbol trades).
            "delisting": listing.delivery_time.isoformat() if listing and listing.delivery_time else None,
            "allow_missing": allow_missing,
            "complete": report.missing == 0,
            "totals": {"expected": report.expected, "present": report.present, **report.totals},
            "days": [{"day": day.isoformat(), "rows": per_day_rows.get(day, 0), **counts}
                     for day, counts in day_counts(report).items()],
            "gaps": report.to_json()["gaps"],
        }
        manifest_partial = manifest_path.with_name(f".{manifest_path.name}.partial-{os.getpid()}")
        manifest_partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, out)
        os.replace(manifest_partial, manifest_path)
    except BaseException:
        for leftover in out.parent.glob(f".{out.name}*.partial-{os.getpid()}"):
            leftover.unlink(missing_ok=True)
        raise
    return Export(path=out, manifest_path=manifest_path, rows=rows, manifest=manifest)


def completeness(report: GapReport) -> dict[str, object]:
    """The summary GET /api/klines answers with: totals and whether anything is missing."""
    return {"complete": report.missing == 0, "expected": report.expected, "present": report.present,
            **report.totals, "gaps": report.to_json()["gaps"]}

