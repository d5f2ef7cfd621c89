-- Recorded outage candles (5m) of one symbol per UTC day, for the given days (ledger rows never
-- cross midnight).
SELECT (start AT TIME ZONE 'UTC')::date AS day, (sum(extract(epoch FROM "end" - start)) / 300)::integer AS candles
FROM price_kline_gaps
WHERE symbol = %(symbol)s AND (start AT TIME ZONE 'UTC')::date = ANY(%(days)s)
GROUP BY 1;
