-- What ingest learned about the exchange, so checks and gap reports need no request.

-- Listing time per symbol (from instruments-info, or the first candle for spot).
CREATE TABLE IF NOT EXISTS price_kline_listings (
    symbol      text PRIMARY KEY,
    category    text        NOT NULL,
    launch_time timestamptz,            -- NULL: the exchange has no candle for it yet
    checked_at  timestamptz NOT NULL
);

-- Exchange outages: spans inside a symbol's listed life for which a complete fetch returned no
-- candles. Kept per fetched day (a span crossing midnight is two rows); a later fetch that
-- returns candles there removes the row. [start, "end") on the 5-minute grid.
CREATE TABLE IF NOT EXISTS price_kline_gaps (
    symbol         text        NOT NULL,
    start          timestamptz NOT NULL,
    "end"          timestamptz NOT NULL,
    first_seen     timestamptz NOT NULL,
    last_confirmed timestamptz NOT NULL,
    PRIMARY KEY (symbol, start),
    CHECK (start < "end")
);
