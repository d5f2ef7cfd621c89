"""The old system's HTTP API, kept for its scripts, now launching and reporting Dagster backfills.

    POST /api/backfill                      {"symbol", "start", "end"} -> 202, a Dagster backfill
    GET  /api/backfill?type=gaps&symbol=…&start=…&end=…   -> the gap report (`kline-pipeline gaps --json`)
    GET  /api/backfill?type=status&id=…                   -> a backfill's status and per-partition progress
    GET  /api/health                        -> `kline-pipeline doctor --json` (200 healthy, else 503)

Served by `kline-pipeline serve-api` (and by `kline-pipeline dev` on port 3000). It talks to the
Dagster instance directly (DAGSTER_HOME, resolved like every `kline-pipeline` command), not to
the webserver; the Dagster daemon executes what it launches (see `kline_pipeline.backfills`).

Bad input never launches, adds or writes anything and is answered with JSON
`{"error": "<what is wrong and what is allowed>", "field": "<name>"}`:
400 for a bad field, an unknown `type`, a missing parameter or invalid JSON; 415 when a POST body
is not `Content-Type: application/json`; 413 when it is larger than 4 KiB. 404 for an unknown
backfill id; 502 when Bybit cannot be asked whether a symbol is listed; 503 when the candle
database is unreachable.
"""

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import dagster as dg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kline_pipeline import clock
from kline_pipeline.backfills import RequestError, backfill_status, launch_backfill, max_days_from_env, validate_request
from kline_pipeline.bybit import BybitClient, BybitError

MAX_BODY_BYTES = 4096
"""A request is three short strings; anything larger is a mistake or abuse."""

BACKFILL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
QUERY_TYPES = ("gaps", "status")

log = logging.getLogger(__name__)


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def _validation_client() -> BybitClient:
    # Answering an HTTP caller: two quick attempts, not the ingest's long retry budget.
    return BybitClient(max_attempts=2, timeout_seconds=5.0, backoff_base_seconds=0.2, backoff_max_seconds=1.0)


def _default_instance() -> dg.DagsterInstance:
    from kline_pipeline.cli import _instance

    return _instance()


class _TooLarge(Exception):
    pass


async def _read_body(request: Request) -> bytes:
    """The body, refusing more than MAX_BODY_BYTES whether or not Content-Length says so."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    *, instance: dg.DagsterInstance | None = None, bybit: BybitClient | None = None,
    store: Any = None, max_days: int | None = None, ui_url: str | None = None,
    now: Callable[[], Any] | None = None,
) -> Starlette:
    """The Starlette app. Every argument defaults to what `serve-api` uses (tests inject theirs).

    `store` is a KlineStore (default: KLINE_DATABASE_URL or the embedded PostgreSQL), `now` the
    clock (default `kline_pipeline.clock.utcnow`, looked up per request so tests can freeze it).
    """
    from kline_pipeline.store import KlineStore

    limit = max_days if max_days is not None else max_days_from_env()
    dagster_instance = instance or _default_instance()  # fail at start, not on the first request
    exchange = bybit or _validation_client()
    kline_store = store or KlineStore()

    def utcnow() -> Any:
        return (now or clock.utcnow)()

    def launch(doc: dict[str, Any]) -> JSONResponse:
        try:
            symbol, start, end = validate_request(
                doc.get("symbol"), doc.get("start"), doc.get("end"), now=utcnow(), max_days=limit, bybit=exchange)
            launched = launch_backfill(dagster_instance, symbol=symbol, start=start, end=end, now=utcnow(),
                                       bybit=exchange, launched_by="api", ui_url=ui_url)
        except RequestError as exc:
            return _error(400, str(exc), exc.field)
        except BybitError as exc:
            return _error(502, f"could not ask Bybit whether the symbol is listed: {exc}; nothing was launched")
        log.info("launched backfill %s: %s, %d partitions", launched.backfill_id, launched.symbol,
                 len(launched.partition_keys))
        return JSONResponse(launched.to_json(), status_code=202)

    def gaps(params: dict[str, str]) -> JSONResponse:
        from kline_pipeline.gaps import gap_report

        # No exchange check here: a report reads only the candle store, like `kline-pipeline gaps`.
        try:
            symbol, start, end = validate_request(
                params.get("symbol"), params.get("start"), params.get("end"), now=utcnow(), max_days=limit)
            report = gap_report(kline_store, symbol=symbol, start=start, end=end, now=utcnow())
        except RequestError as exc:
            return _error(400, str(exc), exc.field)
        except ConnectionError as exc:
            return _error(503, str(exc))
        return JSONResponse(report.to_json())

    def status(params: dict[str, str]) -> JSONResponse:
        backfill_id = params.get("id", "")
        if not BACKFILL_ID.fullmatch(backfill_id):
            return _error(400, "id is required: the backfill_id a POST returned (letters, digits, _ and -)", "id")
        try:
            return JSONResponse(backfill_status(dagster_instance, backfill_id))
        except KeyError:
            return _error(404, f"no backfill with id {backfill_id!r}", "id")

    async def post_backfill(request: Request) -> JSONResponse:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _error(415, f"Content-Type must be application/json, got {media_type or 'none'!r}", "Content-Type")
        try:
            raw = await _read_body(request)
        except _TooLarge:
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes; send only symbol, start and end", "body")
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"the body is not valid JSON ({exc}); send "
                          '{"symbol": "BTCUSDT", "start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z"}', "body")
        if not isinstance(doc, dict):
            return _error(400, "the body must be a JSON object with symbol, start and end", "body")
        for name in ("symbol", "start", "end"):
            if doc.get(name) in (None, ""):
                return _error(400, f"{name} is required (symbol e.g. BTCUSDT; start and end ISO 8601 UTC, "
                              "e.g. 2025-01-01T00:00:00Z)", name)
        # Dagster instance and Bybit calls block: keep them off the event loop.
        return await run_in_threadpool(launch, doc)

    async def get_backfill(request: Request) -> JSONResponse:
        params = dict(request.query_params)
        kind = params.get("type")
        if kind not in QUERY_TYPES:
            what = "is required" if not kind else f"{kind!r} is not known"
            return _error(400, f"type {what}: use type=gaps (with symbol, start, end) or type=status (with id)", "type")
        if kind == "gaps":
            for name in ("symbol", "start", "end"):
                if not params.get(name):
                    return _error(400, f"{name} is required for type=gaps", name)
            return await run_in_threadpool(gaps, params)
        return await run_in_threadpool(status, params)

    async def get_health(request: Request) -> JSONResponse:
        """`kline-pipeline doctor --json`: 200 when healthy, 503 with problems or when it cannot tell."""
        from kline_pipeline.health import check_health

        report = await run_in_threadpool(lambda: check_health(dagster_instance, kline_store, now=utcnow()))
        return JSONResponse(report.to_json(), status_code=200 if report.exit_code == 0 else 503)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # 404, 405 as JSON too
        return _error(exc.status_code, f"{exc.detail}: the API has POST and GET /api/backfill and GET /api/health only")

    return Starlette(
        routes=[Route("/api/backfill", post_backfill, methods=["POST"]),
                Route("/api/backfill", get_backfill, methods=["GET"]),
                Route("/api/health", get_health, methods=["GET"])],
        exception_handlers={HTTPException: http_error},
    )


def serve_api(*, host: str = "127.0.0.1", port: int = 3000) -> None:
    """Serve the API with uvicorn until interrupted (comes with dagster-webserver)."""
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="info")
