-- The live state of the given symbols (those never refreshed live have no row).
SELECT symbol, last_tick_at, last_error, last_error_at, pending_since, recorded_through, reported_state, reported_day
FROM price_kline_live_state WHERE symbol = ANY(%(symbols)s);
