-- What explains holes for a symbol over [start, end): its listing and delisting times and the
-- recorded exchange outages overlapping the range (NULL rows when there are none).
SELECT l.launch_time, l.symbol IS NOT NULL AS listing_known, g.start, g."end", l.delivery_time
FROM (SELECT 1) AS one
LEFT JOIN price_kline_listings AS l ON l.symbol = %(symbol)s
LEFT JOIN price_kline_gaps AS g ON g.symbol = %(symbol)s AND g.start < %(end)s AND g."end" > %(start)s
ORDER BY g.start;
