-- When each of these symbols stopped (or stops) trading, as recorded at its last ingest (NULL: not known
-- to be delisted); a closed symbol without a deliveryTime counts from its last check.
SELECT l.symbol, coalesce(l.delivery_time, CASE WHEN l.status = 'Closed' THEN l.checked_at END)
FROM price_kline_listings AS l
WHERE l.symbol = ANY(%(symbols)s::text[]);
