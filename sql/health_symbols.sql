-- First and newest stored 5m candle of each symbol: two index probes per symbol, whatever its
-- history (what `kline-pipeline doctor` reads; an empty array just proves the database answers).
SELECT s.symbol,
       (SELECT min(p.timestamp) FROM price_klines AS p WHERE p.symbol = s.symbol AND p.timeframe = '5m'),
       (SELECT max(p.timestamp) FROM price_klines AS p WHERE p.symbol = s.symbol AND p.timeframe = '5m')
FROM unnest(%(symbols)s::text[]) AS s (symbol)
ORDER BY s.symbol;
