"""The rows of an export, streamed from PostgreSQL by several connections reading one snapshot.

A single backend formatting candles as text is the export's limit (the numeric and timestamp
output functions run once per value), so a range is cut into windows of CHUNK_ROWS rows and
`workers` connections each COPY every `workers`-th window, a few windows ahead of the writer.
They share one snapshot (`pg_export_snapshot`, REPEATABLE READ), so the file is one consistent
state of the store, as if read in one transaction. The windows come back in order and only a few
are held at once (each worker keeps at most one finished window waiting), so memory is bounded
by the chunk size, not by the range. A `convert` step (e.g. reading a binary chunk as arrays)
runs in the worker too, beside the database reads.

Completeness from the same rows: given `starts` (the open times a converted chunk holds), a worker
compares each window of 5m candles with its grid; a window holding exactly one candle per slot has
no hole, any other (a hole, or a row off the grid put there by hand) has its holes read right there
(sql/gap_holes.sql over the window, on the same snapshot).
The export's gap report is then built from what it exported, without scanning the range a second
time (that scan cost as much CPU as a third of the export), and cannot disagree with the file.
"""

import io
import queue
import threading
from collections.abc import Callable, Generator, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np

from kline_pipeline.models import CANDLE_MS, to_ms
from kline_pipeline.sqlfiles import sql_text
from kline_pipeline.store import KlineStore
from kline_pipeline.store_reads import GapHoles

T = TypeVar("T")

CHUNK_ROWS = 20_000
"""Rows per COPY (~1.5 MB): memory is bounded by a few chunks, not by the range; small enough that
the two workers finish together (the last window is the only one read alone), large enough that a
window's query costs little beside its rows."""
WORKERS = 2
"""Connections reading at once: a backend each, as many as this machine's cores (2) — beyond
that they only take turns, and the writer and the completeness query need CPU too."""

def windows(stride: timedelta, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows of at most CHUNK_ROWS rows of `stride`."""
    width = stride * CHUNK_ROWS
    cuts = []
    lo = start
    while lo < end:
        cuts.append((lo, min(end, lo + width)))
        lo = cuts[-1][1]
    return cuts


def _dbapi(raw: Any) -> Any:
    """The psycopg2 connection under a pooled SQLAlchemy connection."""
    connection = raw.driver_connection
    if connection is None:
        raise RuntimeError("the pooled connection was invalidated before the export used it")
    return connection


def _begin(cursor: Any, *, snapshot: str | None = None, share: bool = False) -> str | None:
    """Open a read-only REPEATABLE READ transaction: on `snapshot` if given; else a new one, whose
    id is returned when `share` (for the other connections)."""
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot is not None:
        cursor.execute("SET TRANSACTION SNAPSHOT %(id)s", {"id": snapshot})
    # The CSV's times are the ISO text of `timestamp` (sql/export_csv_chunk.sql): psycopg2 sets ISO
    # when it connects, but a pool hook or role setting may change it for the session.
    cursor.execute("SET LOCAL DateStyle = 'ISO'")
    if share:
        cursor.execute("SELECT pg_export_snapshot()")
        return str(cursor.fetchone()[0])
    return snapshot


def merge_holes(parts: Iterable[GapHoles]) -> GapHoles:
    """The holes of consecutive windows as those of their union (a hole across a window's end is one)."""
    holes: list[tuple[datetime, datetime]] = []
    present = 0
    for part in parts:
        present += part.present
        for lo, hi in part.holes:
            if holes and holes[-1][1] == lo:
                holes[-1] = (holes[-1][0], hi)
            else:
                holes.append((lo, hi))
    return GapHoles(present=present, holes=tuple(holes))


def _window_holes(cursor: Any, symbol: str, lo: datetime, hi: datetime, starts: np.ndarray | None) -> GapHoles:
    """The holes of one window of 5m candles whose rows open at `starts` (epoch ms; None: unknown):
    none when they are exactly the window's grid, else as the gap query finds them."""
    grid = np.arange(to_ms(lo), to_ms(hi), CANDLE_MS, dtype=np.int64)
    if starts is not None and np.array_equal(starts, grid):
        return GapHoles(present=len(grid), holes=())
    cursor.execute(sql_text("gap_holes.sql"), {"symbol": symbol, "start": lo, "end": hi})
    return GapHoles.from_rows(cursor.fetchall())


def copy_chunks(store: KlineStore, sql_file: str, *, params: dict[str, Any], stride: timedelta,
                start: datetime, end: datetime, convert: Callable[[bytes], T],
                starts: Callable[[T], np.ndarray | None] | None = None,
                workers: int = WORKERS) -> Generator[tuple[T | None, GapHoles | None], None, None]:
    """(`convert(COPY output)`, its holes) for each window of [start, end), oldest first; the item
    is None for a window whose COPY returned nothing.

    `sql_file` is a COPY with %(start)s and %(end)s besides `params`, bound client-side
    (COPY takes no server-side parameters). With `starts` (5m candles of `params["symbol"]` only),
    each window also comes with its holes (see the module docstring), else with None. A failure in
    a worker is raised here; stopping the iteration early stops the workers and ends their
    transactions.
    """
    cuts = windows(stride, start, end)
    count = max(1, min(workers, len(cuts)))
    raws = []
    stop = threading.Event()
    try:
        for _ in range(count):
            raws.append(store.engine().raw_connection())
        snapshot = _begin(_dbapi(raws[0]).cursor(), share=count > 1)
        for raw in raws[1:]:
            _begin(_dbapi(raw).cursor(), snapshot=snapshot)
        outboxes: list[queue.Queue] = [queue.Queue(maxsize=1) for _ in range(count)]
        text = sql_text(sql_file)

        def put(box: queue.Queue, item: object) -> bool:
            while not stop.is_set():
                try:
                    box.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work(index: int) -> None:
            box = outboxes[index]
            try:
                with _dbapi(raws[index]).cursor() as cur:
                    for lo, hi in cuts[index::count]:
                        buffer = io.BytesIO()
                        cur.copy_expert(cur.mogrify(text, {**params, "start": lo, "end": hi}), buffer)
                        item = convert(buffer.getvalue()) if buffer.tell() else None
                        holes = None if starts is None else _window_holes(
                            cur, str(params["symbol"]), lo, hi, starts(item) if item is not None else None)
                        if not put(box, ((item, holes), None)):
                            return
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(box, (None, exc))

        threads = [threading.Thread(target=work, args=(i,), name=f"export-copy-{i}", daemon=True)
                   for i in range(count)]
        for thread in threads:
            thread.start()
        try:
            for number in range(len(cuts)):
                window, error = outboxes[number % count].get()
                if error is not None:
                    raise error
                yield window
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    finally:
        stop.set()
        for raw in raws:
            if raw.driver_connection is not None:
                raw.driver_connection.rollback()
            raw.close()
