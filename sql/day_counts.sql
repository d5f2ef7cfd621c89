-- Stored 5m candles of one symbol per UTC day in [start, end): a range scan of the primary key.
SELECT (timestamp AT TIME ZONE 'UTC')::date AS day, count(*) AS candles
FROM price_klines
WHERE symbol = %(symbol)s AND timeframe = '5m' AND timestamp >= %(start)s AND timestamp < %(end)s
GROUP BY 1;
