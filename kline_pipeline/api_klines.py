"""GET /api/klines?symbol=&timeframe=&start=&end=: the dashboard's read path on the old API.

The stored candles of one timeframe (5m or a rollup) over [start, end), the same rows as
`kline-pipeline export`, streamed: JSON by default
(`{"symbol", "timeframe", "start", "end", "completeness": {...}, "rows": [{"date", "open", ...}]}`,
prices as the stored decimal strings), or CSV with `Accept: text/csv` (the export's CSV; the
completeness summary in `X-Kline-*` headers). The summary is the gap report's: expected and present
5m candles, each cause's count and `complete` (nothing missing). Only reads the candle store.
"""

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from kline_pipeline.backfill_requests import RequestError, validate_request
from kline_pipeline.export import COLUMNS, CSV_HEADER, ExportError, completeness, csv_chunks, validate_grid, \
    validate_timeframe
from kline_pipeline.gaps import gap_report
from kline_pipeline.store import KlineStore

PARAMS = ("symbol", "timeframe", "start", "end")


def _json_body(head: dict[str, Any], chunks: Iterator[bytes]) -> Iterator[bytes]:
    """`head` with a "rows" list filled from the CSV chunks, one chunk at a time."""
    opening = json.dumps(head)[:-1] + ', "rows": ['
    yield opening.encode()
    first = True
    for chunk in chunks:
        rows = [dict(zip(COLUMNS, row)) for row in csv.reader(io.StringIO(chunk.decode()))]
        text = ",".join(json.dumps(row, separators=(",", ":")) for row in rows)
        if text:
            yield (text if first else "," + text).encode()
            first = False
    yield b"]}"


def klines_endpoint(store: KlineStore, *, max_days: int, utcnow: Callable[[], datetime],
                    error: Callable[..., JSONResponse]) -> Callable[[Request], Any]:
    """The route's handler; `error(status, message, field)` makes the API's JSON errors."""

    def prepare(params: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]] | JSONResponse:
        try:
            symbol, start, end = validate_request(params.get("symbol"), params.get("start"), params.get("end"),
                                                  now=utcnow(), max_days=max_days)
            timeframe = validate_timeframe(params.get("timeframe"))
            validate_grid(timeframe, start, end)
            report = gap_report(store, symbol=symbol, start=start, end=end, now=utcnow())
        except (RequestError, ExportError) as exc:
            return error(400, str(exc), exc.field)
        except ConnectionError as exc:
            return error(503, str(exc))
        except ValueError as exc:  # KLINE_DATABASE_URL itself is wrong: the server's fault
            return error(503, f"the candle database is not configured correctly: {exc}")
        query = {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end}
        head = {"symbol": symbol, "timeframe": timeframe, "start": start.isoformat(), "end": end.isoformat(),
                "columns": list(COLUMNS), "completeness": completeness(report)}
        return query, head

    async def get_klines(request: Request) -> Response:
        params = dict(request.query_params)
        for name in PARAMS:
            if not params.get(name):
                return error(400, f"{name} is required (symbol e.g. BTCUSDT; timeframe 5m, 15m, 30m, 1h, 4h, 12h "
                             "or 1d; start and end ISO 8601 UTC, e.g. 2025-01-01T00:00:00Z)", name)
        prepared = await run_in_threadpool(prepare, params)
        if isinstance(prepared, Response):
            return prepared
        query, head = prepared
        chunks = csv_chunks(store, **query)
        if "text/csv" in request.headers.get("accept", ""):
            summary = head["completeness"]
            headers = {f"X-Kline-{name.replace('_', '-').title()}": str(summary[name]).lower()
                       for name in ("complete", "expected", "present", "exchange_outage", "missing", "not_listed",
                                    "not_yet_closed")}

            def body() -> Iterator[bytes]:
                yield CSV_HEADER.encode()
                yield from chunks

            return StreamingResponse(iterate_in_threadpool(body()), media_type="text/csv", headers=headers)
        return StreamingResponse(iterate_in_threadpool(_json_body(head, chunks)), media_type="application/json")

    return get_klines
