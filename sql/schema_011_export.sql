-- Every stored timeframe as one relation, for `kline-pipeline export` and GET /api/klines: the raw
-- 5m candles and the six rollups. A query with a constant timeframe keeps only that branch (the
-- planner drops the others) and reads one table by its primary key range.
-- Idempotent: applied before first use by every process (under an advisory lock).
CREATE OR REPLACE VIEW price_klines_by_timeframe AS
    SELECT timeframe, symbol, timestamp AS ts, open, high, low, close, volume, turnover FROM price_klines
    UNION ALL SELECT '15m', symbol, bucket, open, high, low, close, volume, turnover FROM price_klines_15m
    UNION ALL SELECT '30m', symbol, bucket, open, high, low, close, volume, turnover FROM price_klines_30m
    UNION ALL SELECT '1h', symbol, bucket, open, high, low, close, volume, turnover FROM price_klines_1h
    UNION ALL SELECT '4h', symbol, bucket, open, high, low, close, volume, turnover FROM price_klines_4h
    UNION ALL SELECT '12h', symbol, bucket, open, high, low, close, volume, turnover FROM price_klines_12h
    UNION ALL SELECT '1d', symbol, bucket, open, high, low, close, volume, turnover FROM price_klines_1d;
