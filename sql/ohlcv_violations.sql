-- Stored 5m candles of one symbol in [start, end) that break a rule, grouped by UTC day and the
-- first rule each breaks: how many, and the first offending candle. One query serves all the
-- days a check step covers.
SELECT (timestamp AT TIME ZONE 'UTC')::date AS day, rule, count(*) AS candles, min(timestamp) AS first_candle
FROM (
    SELECT timestamp,
           CASE
               WHEN extract(epoch FROM timestamp)::bigint %% 300 <> 0 THEN 'off the 5-minute grid'
               WHEN high < low THEN 'high below low'
               WHEN low > least(open, close) THEN 'low above open/close'
               WHEN high < greatest(open, close) THEN 'high below open/close'
               WHEN low <= 0 THEN 'non-positive price'
               WHEN volume < 0 OR turnover < 0 THEN 'negative volume or turnover'
               WHEN timestamp >= %(closed_until)s THEN 'candle not closed yet'
           END AS rule
    FROM price_klines
    WHERE symbol = %(symbol)s AND timeframe = '5m' AND timestamp >= %(start)s AND timestamp < %(end)s
) AS checked
WHERE rule IS NOT NULL
GROUP BY 1, 2
ORDER BY 1, 2;
