-- The listing recorded at the last ingest of a symbol, if any.
SELECT symbol, category, launch_time, coalesce(status, ''), delivery_time, checked_at
FROM price_kline_listings WHERE symbol = %(symbol)s;
