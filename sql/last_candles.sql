-- The newest stored 5m candle of each symbol: one backward index probe per symbol, whatever its history.
SELECT s.symbol, (SELECT max(p.timestamp) FROM price_klines AS p WHERE p.symbol = s.symbol AND p.timeframe = '5m')
FROM unnest(%(symbols)s::text[]) AS s (symbol);
