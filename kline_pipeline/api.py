"""The old system's HTTP API, kept for its scripts, now launching and reporting Dagster backfills.

    POST   /api/backfill                    {"symbol", "start", "end"[, "force"]} -> 202, a Dagster backfill
                                            (200 and the same backfill for a repeated request, see below)
    GET    /api/backfill?type=gaps&symbol=…&start=…&end=…   -> the gap report (`kline-pipeline gaps --json`)
    GET    /api/backfill?type=status&id=…                   -> a backfill's status and per-partition progress
    DELETE /api/backfill?id=…               -> 202, the backfill canceled (`kline-pipeline backfill --cancel`)
    GET    /api/health                      -> `kline-pipeline doctor --json` (200 healthy, else 503)
    GET    /api/klines?symbol=…&timeframe=…&start=…&end=…  -> stored candles + completeness
                                            (JSON, or CSV with Accept: text/csv; see `kline_pipeline.api_klines`)

Served by `kline-pipeline serve-api` (and by `kline-pipeline dev` on port 3000). It talks to the
Dagster instance directly (DAGSTER_HOME, resolved like every `kline-pipeline` command), not to
the webserver; the Dagster daemon executes what it launches (see `kline_pipeline.backfills`).

A repeated POST does not launch twice (`kline_pipeline.idempotency`): with an `Idempotency-Key`
header, every request with that key gets the first one's backfill (422 if it asks for something
else); without one, a request for the same symbol and days as a still-running backfill gets that
backfill (200, `"reused": true`) unless the body says `"force": true`.

Bad input never launches, adds or writes anything and is answered with JSON
`{"error": "<what is wrong and what is allowed>", "field": "<name>"}`:
400 for a bad field, an unknown `type`, a missing parameter or invalid JSON (also JSON nested
deeper than Python can read); 415 when a POST body is not `Content-Type: application/json`; 413
when it is larger than 4 KiB. 404 for an unknown backfill id; 502 when Bybit cannot be asked
whether a symbol is listed; 503 when the candle database is unreachable. Every message passes
through `redact_url`: no credential is ever part of an answer.
"""

import json
import logging
import traceback
from collections.abc import Callable
from typing import Any, cast

import dagster as dg
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kline_pipeline import clock
from kline_pipeline.api_klines import klines_endpoint
from kline_pipeline.backfill_requests import RequestError, max_days_from_env, validate_backfill_id, validate_request
from kline_pipeline.backfills import backfill_status
from kline_pipeline.bybit import BybitClient, BybitError
from kline_pipeline.cancel import cancel_backfill, sweep_until_canceled
from kline_pipeline.idempotency import KEY_HEADER, IdempotencyConflict, launch_once, validate_key
from kline_pipeline.store import redact_url

MAX_BODY_BYTES = 4096
"""A request is three short strings; anything larger is a mistake or abuse."""

QUERY_TYPES = ("gaps", "status")

log = logging.getLogger(__name__)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error that quotes a lone surrogate (`"\\ud800"` in a
    request) stays encodable instead of failing as a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": redact_url(message)}
    if field is not None:
        body["field"] = field
    return AsciiJSONResponse(body, status_code=status)


def _validation_client() -> BybitClient:
    # Answering an HTTP caller: two quick attempts, not the ingest's long retry budget.
    return BybitClient(max_attempts=2, timeout_seconds=5.0, backoff_base_seconds=0.2, backoff_max_seconds=1.0)


def _default_instance() -> dg.DagsterInstance:
    from kline_pipeline.instance.setup import local_instance

    return local_instance()


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

    def launch(doc: dict[str, Any], key: str | None) -> JSONResponse:
        try:
            symbol, start, end = validate_request(
                doc.get("symbol"), doc.get("start"), doc.get("end"), now=utcnow(), max_days=limit, bybit=exchange)
            launched = launch_once(dagster_instance, symbol=symbol, start=start, end=end, now=utcnow(),
                                   bybit=exchange, launched_by="api", ui_url=ui_url, key=key,
                                   force=doc.get("force", False))
        except IdempotencyConflict as exc:
            return _error(422, str(exc), exc.field)
        except RequestError as exc:
            return _error(400, str(exc), exc.field)
        except BybitError as exc:
            return _error(502, f"could not ask Bybit whether the symbol is listed: {exc}; nothing was launched")
        log.info("%s backfill %s: %s, %d partitions", "reused" if launched.reused else "launched",
                 launched.backfill_id, launched.symbol, len(launched.partition_keys))
        return AsciiJSONResponse(launched.to_json(), status_code=200 if launched.reused else 202)

    def gaps(params: dict[str, str]) -> JSONResponse:
        from kline_pipeline.gaps import gap_report
        from kline_pipeline.repair import gaps_json

        # No exchange check here: a report reads only the candle store, like `kline-pipeline gaps`.
        try:
            symbol, start, end = validate_request(
                params.get("symbol"), params.get("start"), params.get("end"), now=utcnow(), max_days=limit)
            report = gap_report(kline_store, symbol=symbol, start=start, end=end, now=utcnow())
            doc = gaps_json(kline_store, report)  # the same JSON as `kline-pipeline gaps --json`
        except RequestError as exc:
            return _error(400, str(exc), exc.field)
        except ConnectionError as exc:
            return _error(503, str(exc))
        except ValueError as exc:  # KLINE_DATABASE_URL itself is wrong: the server's fault, not the caller's
            return _error(503, f"the candle database is not configured correctly: {exc}")
        return AsciiJSONResponse(doc)

    def status(params: dict[str, str]) -> JSONResponse:
        try:
            backfill_id = validate_backfill_id(params.get("id", ""))
            return AsciiJSONResponse(backfill_status(dagster_instance, backfill_id))
        except RequestError as exc:
            return _error(400, str(exc), exc.field)
        except KeyError:
            return _error(404, f"no backfill with id {params['id']!r}", "id")

    def cancel(params: dict[str, str]) -> JSONResponse:
        try:
            backfill_id = validate_backfill_id(params.get("id", ""))
            result = cancel_backfill(dagster_instance, backfill_id)
        except RequestError as exc:
            return _error(400, str(exc), exc.field)
        except KeyError:
            return _error(404, f"no backfill with id {params['id']!r}", "id")
        log.info("cancel: %s", result.summary())
        if result.already_finished:
            return AsciiJSONResponse(result.to_json(), status_code=200)
        # After the answer, keep stopping runs the daemon may still queue until it marks the
        # backfill CANCELED (see kline_pipeline.cancel); the caller follows it with type=status.
        return AsciiJSONResponse(result.to_json(), status_code=202,
                                 background=BackgroundTask(sweep_until_canceled, dagster_instance, backfill_id))

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
        except RecursionError:
            return _error(400, "the body is JSON nested too deeply to read; send a flat object with symbol, "
                          "start and end", "body")
        if not isinstance(doc, dict):
            return _error(400, "the body must be a JSON object with symbol, start and end", "body")
        for name in ("symbol", "start", "end"):
            if doc.get(name) in (None, ""):
                return _error(400, f"{name} is required (symbol e.g. BTCUSDT; start and end ISO 8601 UTC, "
                              "e.g. 2025-01-01T00:00:00Z)", name)
        if not isinstance(doc.get("force", False), bool):
            return _error(400, f"force must be true or false, got {doc['force']!r}", "force")
        try:
            key = validate_key(request.headers.get(KEY_HEADER))
        except RequestError as exc:
            return _error(400, str(exc), exc.field)
        # Dagster instance and Bybit calls block: keep them off the event loop.
        return await run_in_threadpool(launch, doc, key)

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

    async def delete_backfill(request: Request) -> JSONResponse:
        return await run_in_threadpool(cancel, dict(request.query_params))

    async def get_health(request: Request) -> JSONResponse:
        """`kline-pipeline doctor --json`: 200 when healthy, 503 with problems or when it cannot tell."""
        from kline_pipeline.health import check_health

        report = await run_in_threadpool(lambda: check_health(dagster_instance, kline_store, now=utcnow()))
        return JSONResponse(report.to_json(), status_code=200 if report.exit_code == 0 else 503)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:  # 404, 405 as JSON too
        http = cast(HTTPException, exc)  # registered for HTTPException; Starlette types handlers by Exception
        return _error(http.status_code, f"{http.detail}: the API has POST, GET and DELETE /api/backfill, "
                      "GET /api/klines and GET /api/health only")

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the caller's fault: say so without a traceback (the server log has it), and
        # without any credential the exception's text might carry.
        trace = "".join(traceback.format_exception(exc))
        log.error("unhandled error on %s %s:\n%s", request.method, request.url.path, redact_url(trace))
        return _error(500, f"internal error ({type(exc).__name__}: {exc}); nothing more was done")

    return Starlette(
        routes=[Route("/api/backfill", post_backfill, methods=["POST"]),
                Route("/api/backfill", get_backfill, methods=["GET"]),
                Route("/api/backfill", delete_backfill, methods=["DELETE"]),
                Route("/api/health", get_health, methods=["GET"]),
                Route("/api/klines", klines_endpoint(kline_store, max_days=limit, utcnow=utcnow, error=_error),
                      methods=["GET"])],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )


def serve_api(*, host: str = "127.0.0.1", port: int = 3000) -> None:
    """Serve the API with uvicorn until interrupted (comes with dagster-webserver)."""
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="info")
