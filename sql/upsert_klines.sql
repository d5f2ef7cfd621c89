-- Merge the staged candles of one (symbol, day-part) into price_klines.
-- Unchanged rows are not rewritten (no dead tuples on re-runs); changed values are corrected.
-- Returns how many rows changed and the earliest one (rollups refresh from there).
WITH changed AS (
    INSERT INTO price_klines AS p (symbol, timeframe, timestamp, open, high, low, close, volume, turnover)
    SELECT %(symbol)s, '5m', to_timestamp(s.ts_s), s.open, s.high, s.low, s.close, s.volume, s.turnover
    FROM kline_stage AS s
    ON CONFLICT (symbol, timeframe, timestamp) DO UPDATE
    SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
        volume = EXCLUDED.volume, turnover = EXCLUDED.turnover
    WHERE (p.open, p.high, p.low, p.close, p.volume, p.turnover)
          IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.turnover)
    RETURNING p.timestamp
)
SELECT count(*), min(timestamp) FROM changed;
