-- Inside the span that was just fetched, drop stored candles the exchange no longer has,
-- so a re-materialised day mirrors the exchange exactly. Returns how many and the earliest.
WITH gone AS (
    DELETE FROM price_klines AS p
    WHERE p.symbol = %(symbol)s AND p.timeframe = '5m'
      AND p.timestamp >= %(start)s AND p.timestamp < %(end)s
      AND NOT EXISTS (SELECT 1 FROM kline_stage AS s WHERE to_timestamp(s.ts_s) = p.timestamp)
    RETURNING p.timestamp
)
SELECT count(*), min(timestamp) FROM gone;
