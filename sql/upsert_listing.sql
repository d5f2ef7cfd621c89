-- Remember a symbol's listing time (refreshed at every ingest).
INSERT INTO price_kline_listings (symbol, category, launch_time, checked_at)
VALUES (%(symbol)s, %(category)s, %(launch_time)s, %(checked_at)s)
ON CONFLICT (symbol) DO UPDATE
SET category = EXCLUDED.category, launch_time = EXCLUDED.launch_time, checked_at = EXCLUDED.checked_at;
