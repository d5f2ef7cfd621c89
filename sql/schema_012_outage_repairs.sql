-- Outage repair history: every re-fetch of a day holding recorded exchange outages
-- (price_kline_gaps) by the outage_repair schedule, and what it found. Kept after the outage is
-- gone (the ledger row is deleted when its candles appear), so `gaps` and the doctor can say
-- what was recovered and when. Idempotent: applied before first use by every process.
CREATE TABLE IF NOT EXISTS price_kline_gap_repairs (
    symbol        text        NOT NULL,
    day           date        NOT NULL,
    attempted_at  timestamptz NOT NULL,
    outage_before integer     NOT NULL,  -- outage candles recorded in the day before the re-fetch
    recovered     integer     NOT NULL,  -- of those, candles the exchange now served (stored)
    still_out     integer     NOT NULL,  -- outage candles recorded in the day after it
    run_id        text,
    PRIMARY KEY (symbol, day, attempted_at)
);
