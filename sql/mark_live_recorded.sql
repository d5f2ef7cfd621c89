-- The tick's changes of these symbols are refreshed and recorded, and every day up to `through` is final.
UPDATE price_kline_live_state SET pending_since = NULL, recorded_through = %(through)s
WHERE symbol = ANY(%(symbols)s);
