-- In the same transaction as a day's candles: every span of [fetched_start, end) on the 5-minute
-- grid without a staged candle is an exchange outage (the whole span was fetched and the
-- exchange returned nothing there). Ledger rows in that span that no longer hold are removed;
-- rows that still hold keep their first_seen and get a new last_confirmed.
WITH marks AS (
    -- The staged candles plus sentinels just before and at the span's ends: every step longer
    -- than 5 minutes between neighbours is one outage (sorting ~288 rows, no per-slot probing).
    SELECT to_timestamp(s.ts_s) AS ts FROM kline_stage AS s
    WHERE to_timestamp(s.ts_s) >= %(fetched_start)s AND to_timestamp(s.ts_s) < %(end)s
    UNION ALL SELECT %(fetched_start)s::timestamptz - interval '5 minutes'
    UNION ALL SELECT %(end)s::timestamptz
),
islands AS (
    SELECT prev + interval '5 minutes' AS start, ts AS "end"
    FROM (SELECT lag(ts) OVER (ORDER BY ts) AS prev, ts FROM marks) AS steps
    WHERE ts - prev > interval '5 minutes'
),
cleared AS (
    DELETE FROM price_kline_gaps AS p
    WHERE p.symbol = %(symbol)s AND p.start >= %(start)s AND p.start < %(end)s
      AND NOT EXISTS (SELECT 1 FROM islands i WHERE i.start = p.start)
)
INSERT INTO price_kline_gaps (symbol, start, "end", first_seen, last_confirmed)
SELECT %(symbol)s, start, "end", %(seen)s, %(seen)s FROM islands
ON CONFLICT (symbol, start) DO UPDATE SET "end" = EXCLUDED."end", last_confirmed = EXCLUDED.last_confirmed;
