-- Stored buckets that differ from an exact recomputation over a window (see schema_002_rollups.sql).
SELECT bucket, problem FROM price_kline_rollup_mismatches(%(rollup)s, %(start)s, %(end)s, %(symbol)s);
