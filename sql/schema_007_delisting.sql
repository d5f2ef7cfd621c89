-- Delisted and settling symbols (issue 15): the listing row also keeps the instrument's status and
-- when it stops trading (Bybit's deliveryTime, or the end of a closed spot symbol's last candle),
-- so ingest, checks, gap reports and the live refresh treat the days after it as "delisted"
-- without a request. Idempotent: applied before first use by every process (under an advisory lock);
-- existing rows keep NULLs (no delisting known) until their next ingest. The columns are added
-- only when missing: ALTER TABLE would lock the table on every apply.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'price_kline_listings'
                     AND column_name = 'delivery_time') THEN
        ALTER TABLE price_kline_listings ADD COLUMN status text, ADD COLUMN delivery_time timestamptz;
    END IF;
END
$$;
