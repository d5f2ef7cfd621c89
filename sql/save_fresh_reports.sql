-- The candles_fresh outcomes just recorded in Dagster, per symbol, for `day`.
INSERT INTO price_kline_live_state AS s (symbol, reported_state, reported_day, reported_at)
SELECT t.symbol, t.state, %(day)s, %(at)s FROM unnest(%(symbols)s::text[], %(states)s::text[]) AS t (symbol, state)
ON CONFLICT (symbol) DO UPDATE
SET reported_state = EXCLUDED.reported_state, reported_day = EXCLUDED.reported_day, reported_at = EXCLUDED.reported_at;
