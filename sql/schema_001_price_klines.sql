-- Raw candles. NUMERIC keeps Bybit's decimal strings exact; raw rows have timeframe '5m'.
-- Idempotent: applied before first use by every process (under an advisory lock).
CREATE TABLE IF NOT EXISTS price_klines (
    symbol    text        NOT NULL,
    timeframe text        NOT NULL,
    timestamp timestamptz NOT NULL,
    open      numeric     NOT NULL,
    high      numeric     NOT NULL,
    low       numeric     NOT NULL,
    close     numeric     NOT NULL,
    volume    numeric     NOT NULL,
    turnover  numeric     NOT NULL,
    PRIMARY KEY (symbol, timeframe, timestamp)
);
