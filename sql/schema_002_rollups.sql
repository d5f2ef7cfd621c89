-- Rollups of the 5m candles: one registry row, one table and one routine serve all six.
-- Idempotent: applied before first use by every process (under an advisory lock).

-- The registry is the whitelist: refresh_price_klines() only touches tables named here.
CREATE TABLE IF NOT EXISTS price_kline_rollups (
    name       text PRIMARY KEY,          -- table name, e.g. price_klines_15m
    stride     interval NOT NULL,         -- bucket width; buckets start at UTC midnight multiples
    full_count integer  NOT NULL          -- 5m candles in a complete bucket
);
INSERT INTO price_kline_rollups (name, stride, full_count) VALUES
    ('price_klines_15m', '15 minutes', 3),
    ('price_klines_30m', '30 minutes', 6),
    ('price_klines_1h',  '1 hour',    12),
    ('price_klines_4h',  '4 hours',   48),
    ('price_klines_12h', '12 hours', 144),
    ('price_klines_1d',  '1 day',    288)
ON CONFLICT (name) DO NOTHING;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT name FROM price_kline_rollups LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I (
                 symbol       text        NOT NULL,
                 bucket       timestamptz NOT NULL,
                 open         numeric     NOT NULL,
                 high         numeric     NOT NULL,
                 low          numeric     NOT NULL,
                 close        numeric     NOT NULL,
                 volume       numeric     NOT NULL,
                 turnover     numeric     NOT NULL,
                 candle_count integer     NOT NULL,
                 PRIMARY KEY (symbol, bucket))', r.name);
    END LOOP;
END
$$;

-- Look up a rollup by name, refusing anything else with the list of allowed names.
CREATE OR REPLACE FUNCTION price_kline_rollup(rollup text) RETURNS price_kline_rollups
LANGUAGE plpgsql STABLE AS $$
DECLARE
    entry price_kline_rollups;
BEGIN
    SELECT * INTO entry FROM price_kline_rollups WHERE name = rollup;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown rollup %: allowed are %', quote_nullable(rollup),
            (SELECT string_agg(name, ', ' ORDER BY stride) FROM price_kline_rollups)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN entry;
END
$$;

-- The buckets of `rollup` that a window [window_start, window_end) refreshes: every bucket
-- that overlaps the window, from the one containing window_start to the one containing the
-- last instant before window_end. Whole buckets only, so a window never writes a truncated one.
CREATE OR REPLACE FUNCTION price_kline_rollup_span(rollup text, window_start timestamptz, window_end timestamptz,
                                                   OUT span_start timestamptz, OUT span_end timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r price_kline_rollups := price_kline_rollup(rollup);
BEGIN
    IF window_start IS NULL OR window_end IS NULL OR window_start >= window_end THEN
        RAISE EXCEPTION 'invalid range [%, %): start must be before end', window_start, window_end
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    span_start := date_bin(r.stride, window_start, '2000-01-01 00:00+00');
    span_end := date_bin(r.stride, window_end - interval '1 microsecond', '2000-01-01 00:00+00') + r.stride;
END
$$;

-- Recompute the buckets of one rollup over a window, for one symbol or (NULL) all symbols,
-- exactly, in one transaction: open = first open by time, close = last close by time,
-- high = max, low = min, volume/turnover = sums, candle_count = 5m candles in the bucket.
-- Buckets whose 5m candles disappeared are removed; unchanged buckets are not rewritten.
-- Example (the old manual refresh):
--   CALL refresh_price_klines('price_klines_1d', '2025-01-01 00:00+00', '2025-02-01 00:00+00');
CREATE OR REPLACE PROCEDURE refresh_price_klines(rollup text, window_start timestamptz, window_end timestamptz,
                                                 only_symbol text DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    r price_kline_rollups := price_kline_rollup(rollup);
    span record;
    sym text;
BEGIN
    SELECT * INTO span FROM price_kline_rollup_span(rollup, window_start, window_end);
    IF only_symbol IS NOT NULL AND only_symbol !~ '^[A-Z0-9]{2,30}$' THEN
        RAISE EXCEPTION 'invalid symbol %: symbols are 2-30 characters of A-Z and 0-9', quote_literal(only_symbol)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Per symbol, so every query is an index range scan on (symbol, timeframe, timestamp);
    -- "all symbols" walks the distinct symbols with a loose index scan instead of a seq scan.
    FOR sym IN
        WITH RECURSIVE s(symbol) AS (
            SELECT min(symbol) FROM price_klines
            UNION ALL
            SELECT (SELECT min(p.symbol) FROM price_klines p WHERE p.symbol > s.symbol) FROM s WHERE s.symbol IS NOT NULL
        )
        SELECT s.symbol FROM s WHERE s.symbol IS NOT NULL AND only_symbol IS NULL
        UNION ALL
        SELECT only_symbol WHERE only_symbol IS NOT NULL
    LOOP
        EXECUTE format(
            'WITH fresh AS (
                 SELECT $1::text AS symbol, date_bin($4, timestamp, ''2000-01-01 00:00+00'') AS bucket,
                        (array_agg(open ORDER BY timestamp))[1] AS open, max(high) AS high, min(low) AS low,
                        (array_agg(close ORDER BY timestamp DESC))[1] AS close,
                        sum(volume) AS volume, sum(turnover) AS turnover, count(*)::integer AS candle_count
                 FROM price_klines
                 WHERE symbol = $1 AND timeframe = ''5m'' AND timestamp >= $2 AND timestamp < $3
                 GROUP BY 2),
             upserted AS (
                 INSERT INTO %1$I AS t SELECT * FROM fresh
                 ON CONFLICT (symbol, bucket) DO UPDATE
                 SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                     volume = EXCLUDED.volume, turnover = EXCLUDED.turnover, candle_count = EXCLUDED.candle_count
                 WHERE (t.open, t.high, t.low, t.close, t.volume, t.turnover, t.candle_count) IS DISTINCT FROM
                       (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
                        EXCLUDED.turnover, EXCLUDED.candle_count)
                 RETURNING 1)
             DELETE FROM %1$I AS t
             WHERE t.symbol = $1 AND t.bucket >= $2 AND t.bucket < $3
               -- One primary-key probe per stored bucket (an anti-join against the CTE was
               -- planned as a nested loop: quadratic once the rollup table is full).
               AND NOT EXISTS (SELECT 1 FROM price_klines p
                               WHERE p.symbol = $1 AND p.timeframe = ''5m''
                                 AND p.timestamp >= t.bucket AND p.timestamp < t.bucket + $4)', r.name)
        USING sym, span.span_start, span.span_end, r.stride;
    END LOOP;
END
$$;

-- Buckets, partial buckets (candle_count below full) and the last bucket of one symbol's
-- rollup over a window's span: the assets' metadata.
CREATE OR REPLACE FUNCTION price_kline_rollup_summary(rollup text, window_start timestamptz, window_end timestamptz,
                                                      only_symbol text)
RETURNS TABLE (buckets bigint, partial_buckets bigint, last_bucket timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r price_kline_rollups := price_kline_rollup(rollup);
    span record;
BEGIN
    SELECT * INTO span FROM price_kline_rollup_span(rollup, window_start, window_end);
    RETURN QUERY EXECUTE format(
        'SELECT count(*), count(*) FILTER (WHERE candle_count < $4), max(bucket)
         FROM %I WHERE symbol = $1 AND bucket >= $2 AND bucket < $3', r.name)
        USING only_symbol, span.span_start, span.span_end, r.full_count;
END
$$;
