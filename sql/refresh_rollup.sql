-- Recompute one rollup for one symbol over a window (whole buckets; see schema_002_rollups.sql).
CALL refresh_price_klines(%(rollup)s, %(start)s, %(end)s, %(symbol)s);
