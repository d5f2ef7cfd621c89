-- Buckets of a window that hold fewer 5m candles than a full bucket.
SELECT c.bucket, c.candle_count
FROM price_kline_rollup_compute(%(rollup)s, %(start)s, %(end)s, %(symbol)s) AS c
JOIN price_kline_rollups AS r ON r.name = %(rollup)s
WHERE c.candle_count < r.full_count
ORDER BY c.bucket;
