-- Holes in a symbol's stored 5m candles over [start, end) (both on the grid), in one query: the
-- stored timestamps (a range scan of the primary key; PostgreSQL may prefer a sequential scan when
-- the range covers most of the table) plus sentinels just before start and at end, so leading and
-- trailing holes are ordinary steps between neighbours. Every row carries the number of stored
-- candles; the end sentinel's row is always returned, so there is at least one row.
WITH marks AS (
    SELECT timestamp AS ts, 1 AS stored FROM price_klines
    WHERE symbol = %(symbol)s AND timeframe = '5m' AND timestamp >= %(start)s AND timestamp < %(end)s
    UNION ALL SELECT %(start)s::timestamptz - interval '5 minutes', 0
    UNION ALL SELECT %(end)s::timestamptz, 0
),
steps AS (
    SELECT lag(ts) OVER (ORDER BY ts) AS prev, ts, sum(stored) OVER () AS present FROM marks
)
SELECT CASE WHEN ts - prev > interval '5 minutes' THEN prev + interval '5 minutes' END AS hole_start,
       CASE WHEN ts - prev > interval '5 minutes' THEN ts END AS hole_end,
       present
FROM steps
WHERE ts - prev > interval '5 minutes' OR ts = %(end)s::timestamptz
ORDER BY ts;
