-- One run of the refresh job of each named rollup (timeframes, e.g. '15m'): counters and last
-- run in price_kline_job_stats; a live tick (%(live)s) also records the lookback it used as the
-- rollup's refresh policy. One statement, so one transaction. An unknown timeframe violates the
-- foreign key and records nothing.
WITH runs AS (
    SELECT 'price_klines_' || r.timeframe AS rollup, r.lookback
    FROM unnest(%(timeframes)s::text[], %(lookbacks)s::interval[]) AS r (timeframe, lookback)
), policy AS (
    UPDATE price_kline_rollups AS p SET refresh_lookback = runs.lookback
    FROM runs
    WHERE %(live)s AND p.name = runs.rollup AND runs.lookback IS NOT NULL
      AND p.refresh_lookback IS DISTINCT FROM runs.lookback
)
INSERT INTO price_kline_job_stats AS s (rollup, last_start, last_finish, last_successful_finish, last_run_success,
                                        last_live_start, total_runs, total_successes, total_failures)
SELECT rollup, %(started_at)s, %(finished_at)s, CASE WHEN %(succeeded)s THEN %(finished_at)s END, %(succeeded)s,
       CASE WHEN %(live)s THEN %(started_at)s END, 1, CASE WHEN %(succeeded)s THEN 1 ELSE 0 END,
       CASE WHEN %(succeeded)s THEN 0 ELSE 1 END
FROM runs
ON CONFLICT (rollup) DO UPDATE
SET last_start = EXCLUDED.last_start,
    last_finish = EXCLUDED.last_finish,
    last_successful_finish = coalesce(EXCLUDED.last_successful_finish, s.last_successful_finish),
    last_run_success = EXCLUDED.last_run_success,
    last_live_start = coalesce(EXCLUDED.last_live_start, s.last_live_start),
    total_runs = s.total_runs + 1,
    total_successes = s.total_successes + EXCLUDED.total_successes,
    total_failures = s.total_failures + EXCLUDED.total_failures;
