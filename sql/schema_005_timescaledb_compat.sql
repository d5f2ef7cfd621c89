-- The old TimescaleDB system's SQL, word for word, on plain PostgreSQL:
--   CALL refresh_continuous_aggregate('price_klines_1d', '2025-01-01 00:00:00+00', '2025-02-01 00:00:00+00');
--   SELECT * FROM timescaledb_information.jobs WHERE proc_name = 'policy_refresh_continuous_aggregate';
--   SELECT * FROM timescaledb_information.job_stats ORDER BY last_run_started_at DESC LIMIT 5;
--   SELECT * FROM timescaledb_information.continuous_aggregates;
-- The views have TimescaleDB's columns and answer from what this system records: the rollup
-- registry (price_kline_rollups, with each rollup's refresh lookback) and the job statistics
-- of the live refresh and the rollup assets (price_kline_job_stats, schema_004).
--
-- Where the timescaledb extension is installed, NOTHING here is created: its own procedure and
-- views answer (and would collide with these). Idempotent: applied before first use by every
-- process (under an advisory lock).
DO $compat$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;

    -- TimescaleDB's signature (the aggregate as regclass, a window, `force`), delegating to
    -- refresh_price_klines: every bucket overlapping the window is recomputed exactly, for all
    -- symbols. NULL bounds mean "from the first" / "to the last stored candle", as there.
    -- `force` is accepted and changes nothing: every refresh here recomputes from the candles.
    EXECUTE $ddl$
    CREATE OR REPLACE PROCEDURE public.refresh_continuous_aggregate(continuous_aggregate regclass,
                                                                    window_start timestamptz,
                                                                    window_end timestamptz,
                                                                    force boolean DEFAULT false)
    LANGUAGE plpgsql AS $proc$
    DECLARE
        rollup text := (SELECT relname FROM pg_class WHERE oid = continuous_aggregate);
        first_start timestamptz := window_start;
        last_end timestamptz := window_end;
    BEGIN
        IF first_start IS NULL OR last_end IS NULL THEN
            -- Per symbol through the primary key (two index probes each), not a scan of the table.
            SELECT coalesce(first_start, min(b.first_candle)), coalesce(last_end, max(b.last_candle) + interval '5 minutes')
            INTO first_start, last_end
            FROM (SELECT (SELECT min(p.timestamp) FROM price_klines AS p WHERE p.symbol = l.symbol AND p.timeframe = '5m')
                         AS first_candle,
                         (SELECT max(p.timestamp) FROM price_klines AS p WHERE p.symbol = l.symbol AND p.timeframe = '5m')
                         AS last_candle
                  FROM price_kline_listings AS l) AS b;
            IF first_start IS NULL OR last_end IS NULL OR first_start >= last_end THEN
                RETURN;  -- no candles in an open-ended window: nothing to refresh
            END IF;
        END IF;
        CALL refresh_price_klines(rollup, first_start, last_end);
    END
    $proc$
    $ddl$;

    -- The procedure the jobs below name (proc_name): what one live tick does for one rollup,
    -- recompute it for all symbols from its lookback (start_offset) up to now.
    EXECUTE $ddl$
    CREATE OR REPLACE PROCEDURE public.policy_refresh_continuous_aggregate(job_id integer, config jsonb DEFAULT NULL)
    LANGUAGE plpgsql AS $proc$
    DECLARE
        job record;
    BEGIN
        SELECT j.name, j.refresh_lookback INTO job
        FROM price_kline_refresh_jobs AS j WHERE j.job_id = policy_refresh_continuous_aggregate.job_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown job %: the refresh jobs are 1000 (15m) .. 1005 (1d)', job_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        CALL refresh_price_klines(job.name, now() - job.refresh_lookback, now());
    END
    $proc$
    $ddl$;

    EXECUTE 'CREATE SCHEMA IF NOT EXISTS timescaledb_information';

    -- One job per rollup: the live refresh (Dagster schedule `live_refresh`, every 5-minute
    -- candle close) recomputes each rollup back over its lookback, like a continuous aggregate
    -- refresh policy with start_offset = lookback.
    -- "Scheduled" means a live tick was recorded within the last 15 minutes (three intervals);
    -- the schedule's on/off switch itself lives in Dagster (see `kline-pipeline doctor`).
    EXECUTE $ddl$
    CREATE OR REPLACE VIEW timescaledb_information.jobs AS
    WITH job AS (
        SELECT r.job_id, r.name, r.refresh_lookback, s.last_live_start >= now() - interval '15 minutes' AS live
        FROM price_kline_refresh_jobs AS r LEFT JOIN price_kline_job_stats AS s ON s.rollup = r.name
    )
    SELECT job.job_id,
           format('Refresh Continuous Aggregate Policy [%s]', job.job_id)::name AS application_name,
           interval '5 minutes' AS schedule_interval,
           interval '0' AS max_runtime,
           -1 AS max_retries,
           interval '5 minutes' AS retry_period,
           'public'::name AS proc_schema,
           'policy_refresh_continuous_aggregate'::name AS proc_name,
           pg_get_userbyid(c.relowner) AS owner,
           coalesce(job.live, false) AS scheduled,
           true AS fixed_schedule,
           jsonb_build_object('start_offset', justify_hours(job.refresh_lookback)::text, 'end_offset', NULL,
                              'mat_hypertable_id', job.job_id) AS config,
           CASE WHEN job.live THEN date_bin('5 minutes', now(), '2000-01-01 00:00+00') + interval '5 minutes' END
               AS next_start,
           NULL::timestamptz AS initial_start,
           'public'::name AS hypertable_schema,
           job.name::name AS hypertable_name,
           NULL::name AS check_schema,
           NULL::name AS check_name
    FROM job JOIN pg_class AS c ON c.oid = to_regclass(job.name)
    $ddl$;

    -- Last run, status and counters per job, from the live ticks and rollup asset runs recorded
    -- in price_kline_job_stats. A job that never ran has no row here, as in TimescaleDB.
    EXECUTE $ddl$
    CREATE OR REPLACE VIEW timescaledb_information.job_stats AS
    SELECT j.hypertable_schema,
           j.hypertable_name,
           j.job_id,
           s.last_start AS last_run_started_at,
           s.last_successful_finish,
           CASE WHEN s.last_run_success THEN 'Success' ELSE 'Failed' END::text AS last_run_status,
           CASE WHEN j.scheduled THEN 'Scheduled' ELSE 'Paused' END::text AS job_status,
           s.last_finish - s.last_start AS last_run_duration,
           j.next_start,
           s.total_runs,
           s.total_successes,
           s.total_failures
    FROM timescaledb_information.jobs AS j
    JOIN price_kline_job_stats AS s ON s.rollup = j.hypertable_name
    $ddl$;

    -- The six rollups as continuous aggregates of price_klines, each materialised in its own
    -- table (queried directly: materialized_only), with the aggregation as its definition.
    EXECUTE $ddl$
    CREATE OR REPLACE VIEW timescaledb_information.continuous_aggregates AS
    SELECT 'public'::name AS hypertable_schema,
           'price_klines'::name AS hypertable_name,
           'public'::name AS view_schema,
           r.name::name AS view_name,
           pg_get_userbyid(c.relowner) AS view_owner,
           true AS materialized_only,
           false AS compression_enabled,
           'public'::name AS materialization_hypertable_schema,
           r.name::name AS materialization_hypertable_name,
           format('SELECT symbol, date_bin(%L::interval, "timestamp", ''2000-01-01 00:00+00'') AS bucket, '
                  '(array_agg(open ORDER BY "timestamp"))[1] AS open, max(high) AS high, min(low) AS low, '
                  '(array_agg(close ORDER BY "timestamp" DESC))[1] AS close, sum(volume) AS volume, '
                  'sum(turnover) AS turnover, count(*) AS candle_count, price_kline_category(symbol) AS category '
                  'FROM price_klines WHERE timeframe = ''5m'' GROUP BY 1, 2', r.stride) AS view_definition,
           true AS finalized
    FROM price_kline_rollups AS r JOIN pg_class AS c ON c.oid = to_regclass(r.name)
    ORDER BY r.stride
    $ddl$;
END
$compat$;
