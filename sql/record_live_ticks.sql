-- The outcome of one tick for many symbols: success time, or the error (a success keeps the last error).
INSERT INTO price_kline_live_state AS s (symbol, last_tick_at, last_error, last_error_at)
SELECT t.symbol, CASE WHEN t.error IS NULL THEN %(at)s END, t.error, CASE WHEN t.error IS NOT NULL THEN %(at)s END
FROM unnest(%(symbols)s::text[], %(errors)s::text[]) AS t (symbol, error)
ON CONFLICT (symbol) DO UPDATE
SET last_tick_at = coalesce(EXCLUDED.last_tick_at, s.last_tick_at),
    last_error = coalesce(EXCLUDED.last_error, s.last_error),
    last_error_at = coalesce(EXCLUDED.last_error_at, s.last_error_at);
