-- Holes in a symbol's stored 5m candles over [start, end) (both on the grid), in one query: each
-- stored timestamp beside its predecessor, in primary key order (a window over the index's order:
-- no sort and nothing held in memory, which matters for years of candles), with a sentinel
-- predecessor just before start so a leading hole is an ordinary step. The last row also closes
-- the trailing hole (up to end) and carries the number of stored candles (its row number). The
-- final row is always returned (also when nothing is stored), so there is at least one row.
WITH marked AS MATERIALIZED (
    SELECT ts, prev, next, n FROM (
        SELECT timestamp AS ts,
               lag(timestamp, 1, %(start)s::timestamptz - interval '5 minutes') OVER w AS prev,
               lead(timestamp) OVER w AS next,
               row_number() OVER w AS n
        FROM price_klines
        WHERE symbol = %(symbol)s AND timeframe = '5m' AND timestamp >= %(start)s AND timestamp < %(end)s
        WINDOW w AS (ORDER BY timestamp)
    ) AS steps
    WHERE ts - prev > interval '5 minutes' OR next IS NULL
),
last AS (
    SELECT coalesce(max(ts), %(start)s::timestamptz - interval '5 minutes') AS ts, coalesce(max(n), 0) AS present
    FROM marked WHERE next IS NULL
)
SELECT hole_start, hole_end, present FROM (
    SELECT prev + interval '5 minutes' AS hole_start, ts AS hole_end, NULL::bigint AS present, ts AS ord
    FROM marked WHERE ts - prev > interval '5 minutes'
    UNION ALL
    SELECT CASE WHEN %(end)s::timestamptz - ts > interval '5 minutes' THEN ts + interval '5 minutes' END,
           CASE WHEN %(end)s::timestamptz - ts > interval '5 minutes' THEN %(end)s::timestamptz END,
           present, %(end)s::timestamptz
    FROM last
) AS holes
ORDER BY ord;
