-- Stored rows of one timeframe of one symbol per UTC day in [start, end): the export manifest's `rows`.
SELECT (ts AT TIME ZONE 'UTC')::date AS day, count(*) AS rows
FROM price_klines_by_timeframe
WHERE timeframe = %(timeframe)s AND symbol = %(symbol)s AND ts >= %(start)s AND ts < %(end)s
GROUP BY 1 ORDER BY 1;
