-- What the rollup refresh jobs did, for the TimescaleDB-style views of schema_005.
-- Idempotent: applied before first use by every process (under an advisory lock).

-- Each rollup's refresh policy: how far back a live tick recomputes it. Seeded with the
-- defaults of kline_pipeline/live.py (DEFAULT_LOOKBACK_MINUTES; a test keeps them equal) and
-- overwritten by every live tick with the lookback it actually used (run config may change it).
-- The column is added only when missing: ALTER TABLE would lock the registry on every apply.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'price_kline_rollups'
                     AND column_name = 'refresh_lookback') THEN
        ALTER TABLE price_kline_rollups ADD COLUMN refresh_lookback interval;
    END IF;
END
$$;
UPDATE price_kline_rollups AS r SET refresh_lookback = d.lookback
FROM (VALUES ('price_klines_15m', interval '30 minutes'), ('price_klines_30m', interval '1 hour'),
             ('price_klines_1h', interval '2 hours'), ('price_klines_4h', interval '8 hours'),
             ('price_klines_12h', interval '24 hours'), ('price_klines_1d', interval '48 hours')) AS d (name, lookback)
WHERE r.name = d.name AND r.refresh_lookback IS NULL;

-- One row per rollup with counters, like TimescaleDB's own job statistics: a small table, not a
-- log. Written only by KlineStore.record_job_run (sql/record_job_run.sql): at the end of every
-- live tick (all rollups) and of every rollup asset run (that rollup).
CREATE TABLE IF NOT EXISTS price_kline_job_stats (
    rollup                 text        PRIMARY KEY REFERENCES price_kline_rollups (name),
    last_start             timestamptz NOT NULL,
    last_finish            timestamptz NOT NULL,
    last_successful_finish timestamptz,
    last_run_success       boolean     NOT NULL,
    last_live_start        timestamptz,            -- start of the newest live tick: is the policy running?
    total_runs             bigint      NOT NULL,
    total_successes        bigint      NOT NULL,
    total_failures         bigint      NOT NULL
);

-- The refresh job of each rollup, numbered like TimescaleDB's jobs (from 1000) in order of
-- bucket width: 1000 = price_klines_15m ... 1005 = price_klines_1d.
CREATE OR REPLACE VIEW price_kline_refresh_jobs AS
SELECT (999 + row_number() OVER (ORDER BY stride))::integer AS job_id, name, stride, refresh_lookback
FROM price_kline_rollups;
