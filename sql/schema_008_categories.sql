-- Markets side by side (issue 15): spot, linear and inverse candles of the same symbol are different
-- candles. A market is named like its Dagster partition: `BTCUSDT` on linear, the default (so the
-- old rows, keys and the verification SQL `WHERE symbol = 'BTCUSDT' AND timeframe = '5m'` stay
-- exactly as they were), `spot:BTCUSDT` and `inverse:BTCUSD` on the others. That name is the
-- `symbol` of every row, so every primary key (symbol, ...) already tells the markets apart and no
-- query can mix them; `category` states the market as a column of its own, for filtering and
-- reports. It is GENERATED from the name, so it can never disagree with it, and every existing row
-- becomes 'linear'. Idempotent: applied before first use by every process (under an advisory
-- lock); the columns are added only when missing (adding one rewrites the table once).
CREATE OR REPLACE FUNCTION price_kline_category(market text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(market, ':') > 0 THEN split_part(market, ':', 1) ELSE 'linear' END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT unnest(ARRAY['price_klines', 'price_kline_gaps', 'price_kline_live_state'])
             UNION ALL SELECT name FROM price_kline_rollups LOOP
        IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = t AND column_name = 'category') THEN
            EXECUTE format('ALTER TABLE %I ADD COLUMN category text NOT NULL
                            GENERATED ALWAYS AS (price_kline_category(symbol)) STORED', t);
        END IF;
    END LOOP;
END
$$;

-- The listings kept the configured BYBIT_CATEGORY of their day; a bare name is linear now.
UPDATE price_kline_listings SET category = price_kline_category(symbol)
WHERE category IS DISTINCT FROM price_kline_category(symbol);
