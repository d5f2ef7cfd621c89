-- Hand corrections of price_klines: every (symbol, UTC day) whose 5m candles a statement outside
-- the pipeline inserted, updated or deleted (a person fixing a candle by SQL), so the rollup
-- automation (rollup_refresh_sensor) refreshes exactly those days' buckets.
-- Idempotent: applied before first use by every process (under an advisory lock).

CREATE TABLE IF NOT EXISTS price_kline_hand_changes (
    symbol     text        NOT NULL,
    day        date        NOT NULL,
    changed_at timestamptz NOT NULL,
    -- The sensor tick that took this pair (NULL: not taken yet). A change after it was taken
    -- sets it back to NULL, so the pair is taken again and never lost (see take_hand_changes.sql).
    claim      text,
    PRIMARY KEY (symbol, day)
);

-- One call per STATEMENT, reading the statement's transition tables: a hand UPDATE of a year
-- of candles records its days in one INSERT, not one trigger call per row. The pipeline's own
-- writers (DayWriter: backfills, the live refresh, outage repair) set kline.pipeline_write on
-- their connection and are skipped at once: their changes reach the rollups through Dagster.
CREATE OR REPLACE FUNCTION price_klines_record_hand_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('kline.pipeline_write', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO price_kline_hand_changes (symbol, day, changed_at)
        SELECT DISTINCT n.symbol, (n.timestamp AT TIME ZONE 'UTC')::date, now()
        FROM new_rows AS n WHERE n.timeframe = '5m'
        ON CONFLICT (symbol, day) DO UPDATE SET changed_at = EXCLUDED.changed_at, claim = NULL;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Both sides: an UPDATE may move a candle to another day (or symbol).
        INSERT INTO price_kline_hand_changes (symbol, day, changed_at)
        SELECT symbol, (timestamp AT TIME ZONE 'UTC')::date, now()
        FROM (SELECT symbol, timeframe, timestamp FROM new_rows
              UNION SELECT symbol, timeframe, timestamp FROM old_rows) AS t
        WHERE t.timeframe = '5m'
        GROUP BY 1, 2
        ON CONFLICT (symbol, day) DO UPDATE SET changed_at = EXCLUDED.changed_at, claim = NULL;
    ELSE
        INSERT INTO price_kline_hand_changes (symbol, day, changed_at)
        SELECT DISTINCT o.symbol, (o.timestamp AT TIME ZONE 'UTC')::date, now()
        FROM old_rows AS o WHERE o.timeframe = '5m'
        ON CONFLICT (symbol, day) DO UPDATE SET changed_at = EXCLUDED.changed_at, claim = NULL;
    END IF;
    RETURN NULL;
END
$$;

-- PostgreSQL allows transition tables only on single-event triggers: one trigger per event.
-- CREATE OR REPLACE TRIGGER needs PostgreSQL 14 (the embedded server is 16).
CREATE OR REPLACE TRIGGER price_klines_hand_insert AFTER INSERT ON price_klines
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION price_klines_record_hand_changes();
CREATE OR REPLACE TRIGGER price_klines_hand_update AFTER UPDATE ON price_klines
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION price_klines_record_hand_changes();
CREATE OR REPLACE TRIGGER price_klines_hand_delete AFTER DELETE ON price_klines
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION price_klines_record_hand_changes();
