-- Holes in a symbol's stored 5m candles over [start, end) (both on the grid), found in one pass
-- over the primary-key index: sentinels just before start and at end make leading and trailing
-- holes ordinary ones. Also returns the number of stored candles in the range.
WITH stored AS (
    SELECT timestamp AS ts FROM price_klines
    WHERE symbol = %(symbol)s AND timeframe = '5m' AND timestamp >= %(start)s AND timestamp < %(end)s
),
marks AS (
    SELECT ts FROM stored
    UNION ALL SELECT %(start)s::timestamptz - interval '5 minutes'
    UNION ALL SELECT %(end)s::timestamptz
),
steps AS (
    SELECT lag(ts) OVER (ORDER BY ts) AS prev, ts FROM marks
)
SELECT prev + interval '5 minutes' AS hole_start, ts AS hole_end, (SELECT count(*) FROM stored) AS present
FROM steps
WHERE ts - prev > interval '5 minutes'
UNION ALL
SELECT NULL, NULL, (SELECT count(*) FROM stored)   -- always one row carrying the count
ORDER BY 1 NULLS LAST;
