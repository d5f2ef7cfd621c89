-- Row count, first/last candle and an order-independent checksum of a symbol's 5m candles in [start, end).
SELECT count(*) AS rows,
       min(timestamp) AS first_candle,
       max(timestamp) AS last_candle,
       coalesce(md5(string_agg(
           concat_ws(',', extract(epoch FROM timestamp)::bigint, open, high, low, close, volume, turnover),
           ';' ORDER BY timestamp)), '') AS checksum
FROM price_klines
WHERE symbol = %(symbol)s AND timeframe = '5m' AND timestamp >= %(start)s AND timestamp < %(end)s;
