-- Per-connection staging table for COPY; rows vanish at commit, so a failed day leaves nothing.
CREATE TEMP TABLE IF NOT EXISTS kline_stage (
    ts_s     bigint  NOT NULL,
    open     numeric NOT NULL,
    high     numeric NOT NULL,
    low      numeric NOT NULL,
    close    numeric NOT NULL,
    volume   numeric NOT NULL,
    turnover numeric NOT NULL
) ON COMMIT DELETE ROWS;
