-- Per UTC day: buckets, partial buckets and last bucket of one symbol's rollup over a window's span.
SELECT day, buckets, partial_buckets, last_bucket
FROM price_kline_rollup_day_summary(%(rollup)s, %(start)s, %(end)s, %(symbol)s);
