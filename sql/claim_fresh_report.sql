-- Claim the right to record a changed candles_fresh outcome: returns the symbol only if the last
-- recorded outcome differs (so a live tick and the watchdog sensor never record the same change twice).
INSERT INTO price_kline_live_state AS s (symbol, reported_state, reported_at)
VALUES (%(symbol)s, %(state)s, %(at)s)
ON CONFLICT (symbol) DO UPDATE
SET reported_state = EXCLUDED.reported_state, reported_at = EXCLUDED.reported_at
WHERE s.reported_state IS DISTINCT FROM EXCLUDED.reported_state
RETURNING symbol;
