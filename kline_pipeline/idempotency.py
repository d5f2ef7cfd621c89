"""One backfill per request, however often a client sends it (the old API's POST).

A client that retries on a timeout, or many scripts asking for the same thing at once, must not
start the same work many times. Two rules, checked under one lock so concurrent requests see
each other's launches:

- `Idempotency-Key` header: the first request with a key launches; every later request with
  that key gets that same backfill (200, whatever its status) if it asks for the same symbol and
  days, and a 422 `IdempotencyConflict` if it asks for something else.
- Otherwise (no key, or a key not used before), a request for the same symbol and days as a
  backfill that is still running (REQUESTED) gets that backfill (200) instead of a second one,
  unless it says `"force": true`.

The request and the key are stored as tags of the Dagster backfill (`kline/request`,
`kline/idempotency_key`), so they survive restarts of the API and are visible in the UI. The
lock is per process: one `serve-api` process per Dagster instance, as `kline-pipeline dev` and
the README run it.
"""

import re
import threading
from collections.abc import Sequence
from datetime import date, datetime

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus, PartitionBackfill

from kline_pipeline.backfill_requests import RequestError, touched_days
from kline_pipeline.backfills import LaunchedBackfill, backfill_asset_keys, backfill_ui_url, launch_backfill
from kline_pipeline.bybit import BybitClient
from kline_pipeline.partitions import partition_key

KEY_HEADER = "Idempotency-Key"
KEY_TAG = "kline/idempotency_key"
REQUEST_TAG = "kline/request"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
"""1-255 visible ASCII characters (a UUID, a job name and date, …)."""

_lock = threading.Lock()


class IdempotencyConflict(RequestError):
    """The key was already used for a different request."""


def validate_key(value: str | None) -> str | None:
    """The header's value, None when absent; RequestError naming the header when malformed."""
    if value is None:
        return None
    if not KEY_PATTERN.fullmatch(value):
        raise RequestError(KEY_HEADER, f"{KEY_HEADER} {value[:80]!r} is not allowed: use 1-255 visible ASCII "
                           "characters without spaces, e.g. a UUID")
    return value


def request_tag(symbol: str, days: Sequence[date]) -> str:
    """What makes two requests identical: the symbol and the days, e.g. `BTCUSDT 2025-01-01..2025-01-31`."""
    return f"{symbol} {days[0].isoformat()}..{days[-1].isoformat()}" if days else symbol


def _find(instance: dg.DagsterInstance, tags: dict[str, str], statuses: list[BulkActionStatus] | None) -> PartitionBackfill | None:
    found = instance.get_backfills(filters=BulkActionsFilter(statuses=statuses, tags=tags), limit=1)
    return found[0] if found else None


def _answer(backfill: PartitionBackfill, symbol: str, days: Sequence[date], ui_url: str | None) -> LaunchedBackfill:
    return LaunchedBackfill(
        backfill_id=backfill.backfill_id, symbol=symbol,
        partition_keys=tuple(partition_key(day, symbol) for day in days),
        asset_keys=tuple(key.to_user_string() for key in backfill_asset_keys()),
        ui_url=backfill_ui_url(backfill.backfill_id, base=ui_url), added_symbol=False, reused=True,
    )


def launch_once(
    instance: dg.DagsterInstance, *, symbol: str, start: datetime, end: datetime, now: datetime,
    bybit: BybitClient | None = None, launched_by: str = "api", ui_url: str | None = None,
    key: str | None = None, force: bool = False,
) -> LaunchedBackfill:
    """The backfill for this request: an earlier one (see the module docstring) or a new one.

    Expects a request checked by `validate_request` and a key checked by `validate_key`. Reads
    the instance's backfills; writes a new backfill (and the symbol's partition) only when no
    earlier one answers the request.
    """
    days = touched_days(start, end, now=now)
    request = request_tag(symbol, days)
    with _lock:
        if key is not None:
            earlier = _find(instance, {KEY_TAG: key}, None)
            if earlier is not None:
                if earlier.tags.get(REQUEST_TAG) != request:
                    raise IdempotencyConflict(KEY_HEADER, (
                        f"{KEY_HEADER} {key!r} was used for {earlier.tags.get(REQUEST_TAG)!r} (backfill "
                        f"{earlier.backfill_id}), not {request!r}: use a new key for a different request"))
                return _answer(earlier, symbol, days, ui_url)
        if not force:
            running = _find(instance, {REQUEST_TAG: request}, [BulkActionStatus.REQUESTED])
            if running is not None:
                return _answer(running, symbol, days, ui_url)
        tags = {REQUEST_TAG: request, **({KEY_TAG: key} if key is not None else {})}
        return launch_backfill(instance, symbol=symbol, start=start, end=end, now=now, bybit=bybit,
                               launched_by=launched_by, ui_url=ui_url, tags=tags)
