"""The Bybit v5 market endpoints, as pure functions of (model, query params, now).

Validation errors follow Bybit: HTTP 200 with a non-zero ``retCode`` (10001),
never an HTTP error status.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from .faults import envelope
from .market import INTERVAL_MS, MarketModel, to_row

from .market import CATEGORIES

STATUSES = ("PreLaunch", "Trading", "Delivering", "Closed")
_QUOTE_COINS = ("USDT", "USDC", "USD", "BTC", "ETH", "EUR")


class ApiError(Exception):
    """A request Bybit would reject with HTTP 200 and a non-zero retCode."""

    def __init__(self, ret_msg: str, ret_code: int = 10001) -> None:
        super().__init__(ret_msg)
        self.ret_code = ret_code
        self.ret_msg = ret_msg


def _category(params: dict[str, str]) -> str:
    category = params.get("category", "linear")
    if category not in CATEGORIES:
        raise ApiError("Invalid category")
    return category


def _int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(f"params error: {name} must be an integer, got {raw!r}") from None


def _limit(params: dict[str, str], default: int) -> int:
    limit = _int_param(params, "limit")
    if limit is None:
        return default
    if not 1 <= limit <= 1000:
        raise ApiError(f"params error: limit must be between 1 and 1000, got {limit}")
    return limit


def kline(model: MarketModel, params: dict[str, str], now_ms: int) -> dict[str, object]:
    """``GET /v5/market/kline``."""
    category = _category(params)
    symbol = params.get("symbol", "")
    key = model.resolve(category, symbol)  # exact, case-sensitive, per category, like Bybit
    if key is None:
        raise ApiError("Not supported symbols")
    interval = params.get("interval", "")
    if interval not in INTERVAL_MS:
        raise ApiError("Invalid period!")
    start, end = _int_param(params, "start"), _int_param(params, "end")
    # Modelled pessimistically: a 0 is taken as "not given" (a falsy check on the server), so
    # start=0 asks for the LATEST candles, not the oldest: a listing probe must not send it.
    start = start or None
    end = end or None
    limit = _limit(params, 200)
    rows = [to_row(c) for c in model.kline(key, interval, start, end, limit, now_ms)]
    return envelope(0, "OK", {"symbol": symbol, "category": category, "list": rows}, now_ms)


def _coins(symbol: str) -> tuple[str, str]:
    for quote in _QUOTE_COINS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


def _instrument(symbol: str, launch_ms: int, category: str, status: str, delivery_ms: int | None) -> dict[str, object]:
    base, quote = _coins(symbol)
    item: dict[str, object] = {"symbol": symbol}
    if category != "spot":
        item["contractType"] = "LinearPerpetual" if category == "linear" else "InversePerpetual"
    item.update({"status": status, "baseCoin": base, "quoteCoin": quote})
    if category != "spot":
        # Spot instruments on Bybit carry no launchTime nor deliveryTime: a client must not rely
        # on them there. "0" is Bybit's deliveryTime of a perpetual that is not being delisted.
        item.update({"launchTime": str(launch_ms), "deliveryTime": str(delivery_ms or 0), "priceScale": "2"})
    item["priceFilter"] = {"tickSize": "0.01"}
    return item


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset={offset}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if text.startswith("offset="):
            offset = int(text[7:])
            if offset >= 0:
                return offset
    except (ValueError, UnicodeDecodeError):
        pass
    raise ApiError(f"params error: invalid cursor {cursor!r}")


def instruments_info(model: MarketModel, params: dict[str, str], now_ms: int) -> dict[str, object]:
    """``GET /v5/market/instruments-info`` with opaque-cursor pagination."""
    category = _category(params)
    limit = _limit(params, 500)
    keys = model.keys_in(category)
    # Like Bybit: without a status filter only Trading instruments are listed, so a delisted,
    # settling or not yet launched symbol is found only by asking for its status.
    wanted = params.get("status") or "Trading"
    if wanted not in STATUSES:
        raise ApiError(f"params error: status must be one of {', '.join(STATUSES)}, got {wanted!r}")
    symbols = [s for s, key in keys.items() if model.status(key, now_ms) == wanted]
    if params.get("symbol"):
        symbols = [s for s in symbols if s == params["symbol"]]
    offset = _decode_cursor(params["cursor"]) if params.get("cursor") else 0
    page = symbols[offset: offset + limit]
    next_cursor = _encode_cursor(offset + limit) if offset + limit < len(symbols) else ""
    items = [_instrument(s, model.instruments[keys[s]], category, wanted, model.deliveries.get(keys[s]))
             for s in page]
    return envelope(0, "OK", {"category": category, "list": items, "nextPageCursor": next_cursor}, now_ms)


def server_time(model: MarketModel, params: dict[str, str], now_ms: int) -> dict[str, object]:
    """``GET /v5/market/time`` (reports the simulator's clock, which may be fixed)."""
    result = {"timeSecond": str(now_ms // 1000), "timeNano": str(now_ms * 1_000_000)}
    return envelope(0, "OK", result, now_ms)


ROUTES: dict[str, Callable[[MarketModel, dict[str, str], int], dict[str, object]]] = {
    "/v5/market/kline": kline,
    "/v5/market/instruments-info": instruments_info,
    "/v5/market/time": server_time,
}


def handle(path: str, model: MarketModel, params: dict[str, str], now_ms: int) -> dict[str, object]:
    """Dispatch a known market ``path``; validation failures become retCode envelopes."""
    try:
        return ROUTES[path](model, params, now_ms)
    except ApiError as exc:
        return envelope(exc.ret_code, exc.ret_msg, {}, now_ms)
