-- When each of these symbols stopped (or stops) trading, as recorded at its last check with the
-- exchange: its delivery time (NULL: not known to be delisted). The one rule of "delisted", shared
-- with gap_context.sql and ingest; the recorded status says whether it is confirmed (Closed).
SELECT l.symbol, l.delivery_time, coalesce(l.status, '')
FROM price_kline_listings AS l
WHERE l.symbol = ANY(%(symbols)s::text[]);
