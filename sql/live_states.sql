-- The live state of the given symbols (those never refreshed live have no row).
SELECT symbol, last_tick_at, last_error, last_error_at, reported_state
FROM price_kline_live_state WHERE symbol = ANY(%(symbols)s);
