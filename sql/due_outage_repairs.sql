-- Days holding recorded outages that are due for a re-fetch: for each outage, its latest milestone
-- (first_seen + one of the delays) that has passed, with no repair attempt of its day since then.
-- After the last delay has passed and been tried, an outage is left alone (the exchange keeps it).
SELECT g.symbol, (g.start AT TIME ZONE 'UTC')::date AS day, max(m.milestone) AS milestone
FROM price_kline_gaps AS g
CROSS JOIN LATERAL (SELECT max(g.first_seen + d) AS milestone FROM unnest(%(delays)s::interval[]) AS d
                    WHERE g.first_seen + d <= %(now)s) AS m
WHERE m.milestone IS NOT NULL AND g.symbol = ANY(%(symbols)s)
  AND NOT EXISTS (SELECT 1 FROM price_kline_gap_repairs AS r
                  WHERE r.symbol = g.symbol AND r.day = (g.start AT TIME ZONE 'UTC')::date
                    AND r.attempted_at >= m.milestone)
GROUP BY 1, 2
ORDER BY 1, 2;
