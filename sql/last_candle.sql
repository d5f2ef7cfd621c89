-- The newest stored 5m candle of a symbol (a backward index scan: cost does not grow with history).
SELECT max(timestamp) FROM price_klines WHERE symbol = %(symbol)s AND timeframe = '5m';
