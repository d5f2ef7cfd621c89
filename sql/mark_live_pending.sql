-- A tick changed candles of `symbol` from `since` on: remember it until their rollups are refreshed
-- and the days recorded (written right after the candles, so a failure later in the tick loses nothing).
INSERT INTO price_kline_live_state AS s (symbol, pending_since) VALUES (%(symbol)s, %(since)s)
ON CONFLICT (symbol) DO UPDATE SET pending_since = least(coalesce(s.pending_since, EXCLUDED.pending_since),
                                                         EXCLUDED.pending_since);
