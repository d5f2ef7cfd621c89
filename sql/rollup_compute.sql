-- The exact buckets of one symbol's rollup over a window (what the stored rows must equal).
SELECT bucket, open, high, low, close, volume, turnover
FROM price_kline_rollup_compute(%(rollup)s, %(start)s, %(end)s, %(symbol)s)
ORDER BY bucket;
