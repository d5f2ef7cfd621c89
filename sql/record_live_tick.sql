-- One symbol's live tick: its success time, or its error (a success keeps the last error for the record).
INSERT INTO price_kline_live_state AS s (symbol, last_tick_at, last_error, last_error_at)
VALUES (%(symbol)s, CASE WHEN %(error)s::text IS NULL THEN %(at)s END, %(error)s, CASE WHEN %(error)s::text IS NOT NULL THEN %(at)s END)
ON CONFLICT (symbol) DO UPDATE
SET last_tick_at = coalesce(EXCLUDED.last_tick_at, s.last_tick_at),
    last_error = coalesce(EXCLUDED.last_error, s.last_error),
    last_error_at = coalesce(EXCLUDED.last_error_at, s.last_error_at);
