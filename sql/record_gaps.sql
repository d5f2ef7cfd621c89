-- In the same transaction as a day's candles: every span of [fetched_start, end) on the 5-minute
-- grid without a staged candle is an exchange outage (the whole span was fetched and the
-- exchange returned nothing there). Ledger rows in that span that no longer hold are removed;
-- rows that still hold keep their first_seen and get a new last_confirmed.
WITH missing AS (
    SELECT g
    FROM generate_series(%(fetched_start)s::timestamptz, %(end)s::timestamptz - interval '5 minutes',
                         interval '5 minutes') AS g
    WHERE NOT EXISTS (SELECT 1 FROM kline_stage s WHERE s.ts_s = extract(epoch FROM g)::bigint)
),
islands AS (
    -- Consecutive grid points share g - n * 5 min: one island per outage.
    SELECT min(g) AS start, max(g) + interval '5 minutes' AS "end"
    FROM (SELECT g, g - row_number() OVER (ORDER BY g) * interval '5 minutes' AS island FROM missing) AS m
    GROUP BY island
),
cleared AS (
    DELETE FROM price_kline_gaps AS p
    WHERE p.symbol = %(symbol)s AND p.start >= %(start)s AND p.start < %(end)s
      AND NOT EXISTS (SELECT 1 FROM islands i WHERE i.start = p.start)
)
INSERT INTO price_kline_gaps (symbol, start, "end", first_seen, last_confirmed)
SELECT %(symbol)s, start, "end", %(seen)s, %(seen)s FROM islands
ON CONFLICT (symbol, start) DO UPDATE SET "end" = EXCLUDED."end", last_confirmed = EXCLUDED.last_confirmed;
