"""The HTTP side of the simulator: state, fault scheduling, control endpoints.

Stdlib only.  The server speaks HTTP/1.1 with Content-Length on every response
so a ``requests.Session`` keeps its connection alive, exactly as against Bybit.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import endpoints
from .faults import DEFAULT_FAIL_KINDS, NO_FAULT, Response, fault_response, json_body, slow_seconds, validate_fault
from .market import INTERVAL_MS, Candle, MarketModel, to_row
from .specs import OutageSpec

DEFAULT_INSTRUMENTS: dict[str, int] = {
    "BTCUSDT": 1585526400000,  # 2020-03-30
    "ETHUSDT": 1615766400000,  # 2021-03-15
    "SOLUSDT": 1635465600000,  # 2021-10-29
}


@dataclass(frozen=True)
class RequestRecord:
    """One served market request (control calls are never recorded)."""

    path: str
    params: dict[str, str]
    status: int
    fault: str | None
    at: float = 0.0
    """time.monotonic() when the request arrived (rate tests read the spacing)."""


OMITTABLE_TIME = ("body", "header", "endpoint")
"""Where a reply carries the exchange's time; `BybitSimulator.set_omit_time` can leave each out."""


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class BybitSimulator:
    """An offline, deterministic stand-in for the Bybit v5 public market API.

    The pure helpers (:meth:`candles`) work without starting the server.
    """

    def __init__(self, *, instruments: dict[str, int] | None = None,
                 outages: Iterable[tuple[str, int, int]] = (),
                 now_ms: Callable[[], int] | None = None,
                 fail_every: int | None = None, fail_kinds: Sequence[str] = (),
                 delistings: dict[str, int] | None = None, clock_skew_ms: int = 0) -> None:
        if fail_every is not None and fail_every < 1:
            raise ValueError(f"fail_every must be >= 1, got {fail_every}")
        self.model = MarketModel(DEFAULT_INSTRUMENTS if instruments is None else instruments, delistings)
        self._skew_ms = int(clock_skew_ms)
        self._omit_time: frozenset[str] = frozenset()
        for symbol, start_ms, end_ms in outages:
            self.model.add_outage(symbol, start_ms, end_ms)
        self._clock = now_ms or _wall_clock_ms
        self._fixed_now: int | None = None
        self._fail_every = fail_every
        self._fail_kinds = tuple(validate_fault(k) for k in fail_kinds) or DEFAULT_FAIL_KINDS
        self._lock = threading.Lock()
        self._queue: list[str] = []
        self._served = 0  # market requests counted for fail_every
        self._records: list[RequestRecord] = []
        self._httpd: _SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- lifecycle
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; returns the base URL (port 0 picks a free one)."""
        if self._httpd is not None:
            raise RuntimeError(f"simulator already running at {self.url}")
        httpd = _SimHTTPServer((host, port), _Handler, self)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="bybit-simulator", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and drop open connections; never waits for sleeping (slow) handlers."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping.set()  # wakes handlers sleeping in a "slow" fault
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> BybitSimulator:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765``."""
        if self._httpd is None:
            raise RuntimeError("simulator is not running; call start() first")
        address, port = self._httpd.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else str(address)
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    # --------------------------------------------------------------- control
    def inject(self, *kinds: str) -> None:
        """Queue faults for the next market requests, one per request, in order."""
        checked = [validate_fault(k) for k in kinds]
        with self._lock:
            self._queue.extend(checked)

    def set_now(self, ms: int | None) -> None:
        """Fix the simulator clock at ``ms`` (``None`` returns to the constructor's clock)."""
        with self._lock:
            self._fixed_now = None if ms is None else int(ms)

    def set_clock_skew(self, ms: int) -> None:
        """The exchange's clock runs ``ms`` ahead of the caller's (negative: behind)."""
        with self._lock:
            self._skew_ms = int(ms)

    def set_omit_time(self, *parts: str) -> None:
        """Leave the exchange's time out of replies, to test a client that must not take its own
        clock for it: "body" drops the reply's ``time``, "header" the ``Timenow`` header,
        "endpoint" makes ``/v5/market/time`` unreachable (HTTP 404). No argument: all back."""
        unknown = sorted(set(parts) - set(OMITTABLE_TIME))
        if unknown:
            raise ValueError(f"unknown time part(s) to omit {unknown}: allowed are {', '.join(OMITTABLE_TIME)}")
        with self._lock:
            self._omit_time = frozenset(parts)

    def now(self) -> int:
        """The exchange's time in epoch ms: the caller's clock (fixed or not) plus the skew.
        Every reply carries it (``time`` and the ``Timenow`` header), as Bybit's do."""
        fixed = self._fixed_now
        return (fixed if fixed is not None else int(self._clock())) + self._skew_ms

    def add_instrument(self, key: str, launch_ms: int) -> None:
        """List one more market: ``key`` is "SYMBOL" (every category) or "category:SYMBOL" (that one only)."""
        self.model.add_instrument(key, launch_ms)

    def delist(self, key: str, delivery_ms: int) -> None:
        """``key`` ("SYMBOL" or "category:SYMBOL") settles and stops trading at ``delivery_ms``."""
        self.model.delist(key, delivery_ms)

    def cancel_delisting(self, key: str) -> None:
        """``key``'s announced delisting is called off (to postpone one, ``delist`` it again later)."""
        self.model.cancel_delisting(key)

    def add_outage(self, symbol: str, start_ms: int, end_ms: int, heals_at_ms: int | None = None) -> None:
        """No 5m candles of ``symbol`` with open time in ``[start_ms, end_ms)``; with ``heals_at_ms``,
        only until the simulator clock reaches it (the exchange fills the outage later)."""
        self.model.add_outage(symbol, start_ms, end_ms, heals_at_ms)

    def clear_outages(self, symbol: str) -> None:
        """The candles of ``symbol``'s outages appear after all (a late candle)."""
        self.model.clear_outages(symbol)

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of every market request served so far."""
        with self._lock:
            return list(self._records)

    def kline_requests(self) -> list[RequestRecord]:
        """Only the ``/v5/market/kline`` requests."""
        return [r for r in self.requests if r.path == "/v5/market/kline"]

    def reset_requests(self) -> None:
        """Forget recorded requests (the fail_every counter keeps running)."""
        with self._lock:
            self._records.clear()

    # ---------------------------------------------------------- pure helpers
    def candles(self, symbol: str, start_ms: int, end_ms: int, interval: str = "5") -> list[list[str]]:
        """Final candles with open time in ``[start_ms, end_ms)``, OLDEST first, Bybit row format.

        No 'now' filtering: this is the ground truth a correct client converges to.
        """
        if symbol not in self.model.instruments:
            raise ValueError(f"unknown symbol {symbol!r}")
        if interval not in INTERVAL_MS:
            raise ValueError(f"unsupported interval {interval!r}")
        return [to_row(c) for c in self.raw_candles(symbol, start_ms, end_ms, interval)]

    def raw_candles(self, symbol: str, start_ms: int, end_ms: int, interval: str = "5") -> list[Candle]:
        """Like :meth:`candles` but integer tuples (price 0.01, volume 0.001, turnover 0.0001 units)."""
        return self.model.candles(symbol, start_ms, end_ms, interval)

    # -------------------------------------------------------- request logic
    def _next_fault(self) -> str | None:
        with self._lock:
            self._served += 1
            if self._queue:
                kind = self._queue.pop(0)  # explicit injection wins over the schedule
                return None if kind == NO_FAULT else kind
            if self._fail_every and self._served % self._fail_every == 0:
                nth = self._served // self._fail_every - 1
                return self._fail_kinds[nth % len(self._fail_kinds)]
            return None

    def serve_market(self, path: str, params: dict[str, str]) -> Response:
        """Answer a non-control request, applying faults, and record it."""
        arrived = time.monotonic()
        now = self.now()
        omit = self._omit_time
        if path not in endpoints.ROUTES or (path == "/v5/market/time" and "endpoint" in omit):
            response = Response(404, json_body({"retCode": 404, "retMsg": f"Not Found: {path}",
                                                "result": {}, "retExtInfo": {}, "time": now}))
            fault = None
        else:
            fault = self._next_fault()
            # Only the faults that answer with (part of) the real body need it computed.
            normal: Response | None = None
            if fault is None or fault == "truncated" or slow_seconds(fault) is not None:
                payload = endpoints.handle(path, self.model, params, now)
                if "body" in omit:
                    payload.pop("time", None)
                normal = Response(200, json_body(payload))
            answer = fault_response(fault, normal, now) if fault is not None else normal
            assert answer is not None  # no fault: the normal body was computed
            response = answer
            if "header" not in omit:
                response = replace(response, headers={"Timenow": str(now), **response.headers})
        with self._lock:
            # Recorded before any slow delay so a client that timed out can already see it.
            self._records.append(RequestRecord(path, params, response.status, fault, arrived))
        return response

    def serve_control(self, method: str, path: str, body: bytes) -> Response:
        """``/_sim/*`` endpoints for tests driving a simulator in another process."""
        try:
            data = json.loads(body or b"{}") if method == "POST" else {}
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            if path == "/_sim/faults" and method == "POST":
                if data.get("clear"):
                    with self._lock:
                        self._queue.clear()
                self.inject(*data.get("queue", []))
            elif path == "/_sim/now" and method == "POST":
                ms = data.get("ms")
                if ms is not None and not isinstance(ms, int):
                    raise ValueError(f"ms must be an integer or null, got {ms!r}")
                self.set_now(ms)
                if "omit_time" in data:
                    if not isinstance(data["omit_time"], list):
                        raise ValueError(f"omit_time must be a list, got {data['omit_time']!r}")
                    self.set_omit_time(*data["omit_time"])
                if "skew_ms" in data:
                    if not isinstance(data["skew_ms"], int):
                        raise ValueError(f"skew_ms must be an integer, got {data['skew_ms']!r}")
                    self.set_clock_skew(data["skew_ms"])
            elif path == "/_sim/delistings" and method == "POST":
                # {"symbol": key, "delivery_ms": ms} announces or postpones; "delivery_ms": null cancels.
                key, delivery = str(data["symbol"]), data.get("delivery_ms")
                if delivery is None:
                    self.cancel_delisting(key)
                elif isinstance(delivery, int):
                    self.delist(key, delivery)
                else:
                    raise ValueError(f"delivery_ms must be an integer or null, got {delivery!r}")
            elif path == "/_sim/outages" and method == "POST":
                heals = data.get("heals_at_ms")
                self.add_outage(str(data.get("symbol")), int(data["start_ms"]), int(data["end_ms"]),
                                None if heals is None else int(heals))
            elif path == "/_sim/requests" and method == "GET":
                return Response(200, json_body([asdict(r) for r in self.requests]))
            elif path == "/_sim/requests" and method == "DELETE":
                self.reset_requests()
            else:
                return Response(404, json_body({"error": f"no control endpoint {method} {path}"}))
        except (ValueError, KeyError, TypeError) as exc:
            return Response(400, json_body({"error": str(exc)}))
        return Response(200, json_body({"ok": True}))


class _SimHTTPServer(ThreadingHTTPServer):
    """Threading server that can drop keep-alive connections and never joins handlers on close."""

    daemon_threads = True
    block_on_close = False  # a handler sleeping in a slow fault must not block stop()

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 simulator: BybitSimulator) -> None:
        self.simulator = simulator
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[no-untyped-def]
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down idle keep-alive sockets so their handler threads exit and clients see EOF."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        # Clients hanging up (timeouts, stop()) are expected; stay quiet about them.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SimHTTPServer
    timeout = 120  # idle keep-alive connections eventually free their thread
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus
    # the client's delayed ACK adds ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # request logging would drown benchmark output

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        # Always drain the body so the next request on this connection parses cleanly.
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        sim = self.server.simulator
        if url.path.startswith("/_sim/"):
            response = sim.serve_control(method, url.path, body)
        else:
            response = sim.serve_market(url.path, dict(parse_qsl(url.query, keep_blank_values=True)))
        if response.delay > 0 and self.server.stopping.wait(response.delay):
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_simulator(*, host: str = "127.0.0.1", port: int = 8765, instruments: dict[str, int] | None = None,
                  outages: Sequence[OutageSpec | tuple[str, int, int]] = (), fail_every: int | None = None,
                  fail_kinds: Sequence[str] = (), delistings: dict[str, int] | None = None,
                  clock_skew_ms: int = 0) -> None:
    """Run a simulator in the foreground until Ctrl-C (used by ``kline-pipeline simulate-exchange``).
    An outage healing ``heals_after_ms`` after the start heals that long after this call (exchange time)."""
    sim = BybitSimulator(instruments=instruments, fail_every=fail_every, fail_kinds=fail_kinds,
                         delistings=delistings, clock_skew_ms=clock_skew_ms)
    started_ms = sim.now()
    specs = [OutageSpec(*o) for o in outages]
    for spec in specs:
        sim.add_outage(spec.symbol, spec.start_ms, spec.end_ms, spec.heal_ms(started_ms))
    url = sim.start(host, port)
    print(f"Bybit v5 simulator listening on {url}", flush=True)
    for symbol, launch in sorted(sim.model.instruments.items()):
        delivery = sim.model.deliveries.get(symbol)
        until = f", delisted at {delivery} ms" if delivery is not None else ""
        print(f"  {symbol}: listed since {launch} ms{until}", flush=True)
    if clock_skew_ms:
        print(f"  exchange clock {clock_skew_ms:+d} ms from this machine's", flush=True)
    for spec in specs:
        heal = spec.heal_ms(started_ms)
        heals = f", heals at {heal} ms ({_iso(heal)}, exchange time)" if heal is not None else ""
        if heal is not None and heal <= started_ms:  # legitimate with POST /_sim/now into the past
            heals += " - already healed on the exchange's clock now: its candles are served"
        print(f"  outage {spec.symbol}: [{spec.start_ms}, {spec.end_ms}) ms{heals}", flush=True)
    if fail_every:
        print(f"  every {fail_every}th request fails with: {', '.join(sim._fail_kinds)}", flush=True)
    stop = threading.Event()
    try:
        while not stop.wait(1.0):  # short waits keep Ctrl-C responsive on every platform
            pass
    except KeyboardInterrupt:
        print("stopping simulator", flush=True)
    finally:
        sim.stop()
