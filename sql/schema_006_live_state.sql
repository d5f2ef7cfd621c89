-- What the live refresh knows per symbol between ticks (idempotent; applied by every process):
-- - whether its last tick failed (candles_fresh reports the error),
-- - what a failed or interrupted tick left to do: candles changed since `pending_since` whose
--   rollups or Dagster records are not done yet, and days after `recorded_through` whose final
--   state is not recorded yet (each is redone by the next tick),
-- - the candles_fresh outcome last recorded in Dagster for `reported_day`, so an outcome is recorded
--   only when it changes (every record is a Dagster event write).
CREATE TABLE IF NOT EXISTS price_kline_live_state (
    symbol            text PRIMARY KEY,
    last_tick_at      timestamptz,      -- the last tick that refreshed the symbol successfully
    last_error        text,             -- the last failed tick's error (kept after a later success)
    last_error_at     timestamptz,
    pending_since     timestamptz,
    recorded_through  date,
    reported_state    text,             -- passed, WARN or ERROR
    reported_day      date,
    reported_at       timestamptz
);
