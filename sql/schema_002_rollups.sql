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

-- The exact buckets of one rollup for one symbol over a window's span, computed from the 5m
-- candles: open = first open by time, close = last close by time, high = max, low = min,
-- volume/turnover = sums, candle_count = 5m candles in the bucket. The one aggregation: the
-- refresh writes it, the asset check compares the stored rows with it.
CREATE OR REPLACE FUNCTION price_kline_rollup_compute(rollup text, window_start timestamptz, window_end timestamptz,
                                                      only_symbol text)
RETURNS TABLE (symbol text, bucket timestamptz, open numeric, high numeric, low numeric, close numeric,
               volume numeric, turnover numeric, candle_count integer)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    r price_kline_rollups := price_kline_rollup(rollup);
    span record;
BEGIN
    SELECT * INTO span FROM price_kline_rollup_span(rollup, window_start, window_end);
    RETURN QUERY
    SELECT only_symbol, date_bin(r.stride, p.timestamp, '2000-01-01 00:00+00'),
           (array_agg(p.open ORDER BY p.timestamp))[1], max(p.high), min(p.low),
           (array_agg(p.close ORDER BY p.timestamp DESC))[1], sum(p.volume), sum(p.turnover), count(*)::integer
    FROM price_klines AS p
    WHERE p.symbol = only_symbol AND p.timeframe = '5m' AND p.timestamp >= span.span_start AND p.timestamp < span.span_end
    GROUP BY 2;
END
$$;

-- Recompute the buckets of one rollup over a window, for one symbol or (NULL) all symbols,
-- exactly (price_kline_rollup_compute), in one transaction. Buckets whose 5m candles
-- disappeared are removed; unchanged buckets are not rewritten.
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
    IF only_symbol IS NOT NULL AND only_symbol !~ '^((spot|inverse):)?[A-Z0-9]{2,30}$' THEN
        RAISE EXCEPTION 'invalid symbol %: symbols are 2-30 characters of A-Z and 0-9, prefixed spot: or inverse: for those markets', quote_literal(only_symbol)
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
            'INSERT INTO %1$I AS t SELECT * FROM price_kline_rollup_compute($5, $2, $3, $1)
             ON CONFLICT (symbol, bucket) DO UPDATE
             SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                 volume = EXCLUDED.volume, turnover = EXCLUDED.turnover, candle_count = EXCLUDED.candle_count
             WHERE (t.open, t.high, t.low, t.close, t.volume, t.turnover, t.candle_count) IS DISTINCT FROM
                   (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
                    EXCLUDED.turnover, EXCLUDED.candle_count)', r.name)
        USING sym, span.span_start, span.span_end, r.stride, rollup;
        EXECUTE format(
            'DELETE FROM %1$I AS t
             WHERE t.symbol = $1 AND t.bucket >= $2 AND t.bucket < $3
               -- Buckets that no 5m candle maps to any more. NOT IN over one range scan becomes a
               -- hashed subplan whatever the statistics say; a correlated NOT EXISTS was planned
               -- as a nested loop over the whole symbol (quadratic) right after a first load,
               -- before autovacuum had analysed the table.
               AND t.bucket NOT IN (SELECT date_bin($4, p.timestamp, ''2000-01-01 00:00+00'')
                                    FROM price_klines AS p
                                    WHERE p.symbol = $1 AND p.timeframe = ''5m''
                                      AND p.timestamp >= $2 AND p.timestamp < $3)', r.name)
        USING sym, span.span_start, span.span_end, r.stride;
    END LOOP;
END
$$;

-- Stored buckets of one symbol's rollup over a window's span that differ from an exact
-- recomputation (missing, extra or changed): what the rollup asset check reports.
CREATE OR REPLACE FUNCTION price_kline_rollup_mismatches(rollup text, window_start timestamptz, window_end timestamptz,
                                                         only_symbol text)
RETURNS TABLE (bucket timestamptz, problem text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r price_kline_rollups := price_kline_rollup(rollup);
    span record;
BEGIN
    SELECT * INTO span FROM price_kline_rollup_span(rollup, window_start, window_end);
    RETURN QUERY EXECUTE format(
        'SELECT coalesce(t.bucket, c.bucket),
                CASE WHEN t.bucket IS NULL THEN ''missing'' WHEN c.bucket IS NULL THEN ''extra'' ELSE ''differs'' END
         FROM (SELECT * FROM %I WHERE symbol = $1 AND bucket >= $2 AND bucket < $3) AS t
         FULL JOIN price_kline_rollup_compute($4, $2, $3, $1) AS c ON c.bucket = t.bucket
         WHERE t.bucket IS NULL OR c.bucket IS NULL
            OR (t.open, t.high, t.low, t.close, t.volume, t.turnover, t.candle_count) IS DISTINCT FROM
               (c.open, c.high, c.low, c.close, c.volume, c.turnover, c.candle_count)
         ORDER BY 1', r.name)
        USING only_symbol, span.span_start, span.span_end, rollup;
END
$$;

-- Per UTC day: buckets, partial buckets (candle_count below full) and the last bucket of one
-- symbol's rollup over a window's span: each day partition's own materialization metadata.
DROP FUNCTION IF EXISTS price_kline_rollup_summary(text, timestamptz, timestamptz, text);  -- its per-run predecessor
CREATE OR REPLACE FUNCTION price_kline_rollup_day_summary(rollup text, window_start timestamptz,
                                                          window_end timestamptz, only_symbol text)
RETURNS TABLE (day date, buckets bigint, partial_buckets bigint, last_bucket timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r price_kline_rollups := price_kline_rollup(rollup);
    span record;
BEGIN
    SELECT * INTO span FROM price_kline_rollup_span(rollup, window_start, window_end);
    RETURN QUERY EXECUTE format(
        'SELECT (bucket AT TIME ZONE ''UTC'')::date, count(*), count(*) FILTER (WHERE candle_count < $4), max(bucket)
         FROM %I WHERE symbol = $1 AND bucket >= $2 AND bucket < $3 GROUP BY 1 ORDER BY 1', r.name)
        USING only_symbol, span.span_start, span.span_end, r.full_count;
END
$$;
