-- Remember a symbol's listing time, status and delisting time (refreshed at every ingest).
INSERT INTO price_kline_listings (symbol, category, launch_time, checked_at, status, delivery_time)
VALUES (%(symbol)s, %(category)s, %(launch_time)s, %(checked_at)s, %(status)s, %(delivery_time)s)
ON CONFLICT (symbol) DO UPDATE
SET category = EXCLUDED.category, launch_time = EXCLUDED.launch_time, checked_at = EXCLUDED.checked_at,
    status = EXCLUDED.status, delivery_time = EXCLUDED.delivery_time;
