"""Fault injection: the misbehaviours of the real Bybit API a client must survive.

Each fault kind maps to a canned HTTP response.  They mirror what production
traffic actually shows: rate limiting in its three guises (retCode 10006, HTTP
429, HTTP 403 from the CDN), transient server errors (10000, 10016, 502),
a parameter error, garbage bodies and a hanging server; and Bybit's v5 server
timeout (retCode 5004) and IP rate limit (retCode 10018, with reset headers).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

FAULT_KINDS: tuple[str, ...] = (
    "10006", "10000", "10016", "5004", "10018", "10001", "429", "502", "403", "badjson", "truncated", "slow",
)

IP_LIMIT_RESET_MS = 1000
"""How far ahead of the exchange's clock a 10018 answer's X-Bapi-Limit-Reset-Timestamp lies."""

# Faults used by ``fail_every`` when no kinds are given: the transient ones a
# well-behaved client retries.  "10001" (a client bug on real Bybit), the
# garbage bodies and "slow" (20 s each) must be asked for explicitly.
DEFAULT_FAIL_KINDS: tuple[str, ...] = ("10006", "10000", "10016", "429", "502", "403")

DEFAULT_SLOW_SECONDS = 20.0

_RET_CODES: dict[str, tuple[int, str]] = {
    "10006": (10006, "Too many visits!"),
    "10000": (10000, "Server Timeout"),
    "10016": (10016, "Server error"),
    "5004": (5004, "Server Timeout"),
    "10018": (10018, "Exceeded the IP Rate Limit"),
    "10001": (10001, "params error"),
}


@dataclass(frozen=True)
class Response:
    """An HTTP response ready to be written; ``delay`` seconds are slept first."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


NO_FAULT = "ok"
"""A queue placeholder: answer that request normally (to fail, say, only the third request)."""


def validate_fault(kind: str) -> str:
    """Return ``kind`` if it is a known fault (``slow:<seconds>`` included), else raise ``ValueError``."""
    if not isinstance(kind, str):
        raise ValueError(f"fault kind must be a string, got {kind!r}")
    if kind in FAULT_KINDS or kind == NO_FAULT:
        return kind
    if kind.startswith("slow:"):
        try:
            seconds = float(kind[5:])
        except ValueError:
            seconds = -1.0
        if seconds >= 0 and seconds == seconds:  # rejects negatives and NaN
            return kind
        raise ValueError(f"invalid slow fault {kind!r}: expected 'slow:<seconds>' with seconds >= 0")
    raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)} or 'slow:<seconds>'")


def slow_seconds(kind: str) -> float | None:
    """Delay of a slow fault, ``None`` for other kinds."""
    if kind == "slow":
        return DEFAULT_SLOW_SECONDS
    if kind.startswith("slow:"):
        return float(kind[5:])
    return None


def json_body(payload: object) -> bytes:
    """Compact JSON, as Bybit sends it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def envelope(ret_code: int, ret_msg: str, result: object, now_ms: int) -> dict[str, object]:
    """The standard Bybit v5 response wrapper."""
    return {"retCode": ret_code, "retMsg": ret_msg, "result": result, "retExtInfo": {}, "time": now_ms}


def fault_response(kind: str, normal: Response | None, now_ms: int) -> Response:
    """The response to send instead of (or, for slow/truncated, derived from) ``normal``.

    ``normal`` may be ``None`` except for the slow and truncated kinds.
    """
    delay = slow_seconds(kind)
    if normal is None and (delay is not None or kind == "truncated"):
        raise ValueError(f"fault {kind!r} needs the normal response")
    if delay is not None and normal is not None:
        # Answer correctly, just too late for a client with a shorter timeout.
        return Response(normal.status, normal.body, normal.content_type, normal.headers, delay)
    if kind in _RET_CODES:
        code, msg = _RET_CODES[kind]
        headers: dict[str, str] = {}
        if kind == "10006":
            # A reset timestamp already in the past (wall clock, as clients
            # compare it with time.time()) makes pybit compute a negative sleep
            # and crash with ValueError: the client must survive that.
            past = int(time.time() * 1000) - 1000
            headers = {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": "600",
                       "X-Bapi-Limit-Reset-Timestamp": str(past)}
        elif kind == "10018":
            # The IP limit's reset time on the exchange's clock (as Bybit stamps it): a client
            # that waits less is refused again, one whose clock differs must not mis-time it.
            headers = {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": "600",
                       "X-Bapi-Limit-Reset-Timestamp": str(now_ms + IP_LIMIT_RESET_MS)}
        return Response(200, json_body(envelope(code, msg, {}, now_ms)), headers=headers)
    if kind == "429":
        return Response(429, json_body(envelope(10006, "Too many visits!", {}, now_ms)))
    if kind == "502":
        return Response(502, b"Bad Gateway", "text/plain")
    if kind == "403":
        return Response(403, b"access too frequent", "text/plain")
    if kind == "badjson":
        html = b"<html><head><title>503 Service Unavailable</title></head><body>maintenance</body></html>"
        return Response(200, html, "text/html")
    if kind == "truncated" and normal is not None:
        # Still labelled JSON with a matching Content-Length: the body just ends mid-document.
        return Response(200, normal.body[: len(normal.body) // 2], normal.content_type, normal.headers)
    raise ValueError(f"unknown fault kind {kind!r}")
