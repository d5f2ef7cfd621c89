-- What the live refresh learnt per symbol, so candles_fresh can tell a failing tick from a quiet
-- market and report only changes of freshness (each report is a Dagster event write).
-- Idempotent: applied before first use by every process (under an advisory lock).
CREATE TABLE IF NOT EXISTS price_kline_live_state (
    symbol            text PRIMARY KEY,
    last_tick_at      timestamptz,      -- the last tick that refreshed the symbol successfully
    last_error        text,             -- the last failed tick's error (kept after a later success)
    last_error_at     timestamptz,
    reported_state    text,             -- the candles_fresh outcome last recorded in Dagster: passed, WARN, ERROR
    reported_at       timestamptz
);
