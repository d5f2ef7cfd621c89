-- Delete everything stored for one symbol (`kline-pipeline symbols remove SYMBOL --purge`):
-- its raw candles, its six rollups, its recorded exchange outages, its listing and its live-refresh
-- state. One
-- statement, so one transaction: the symbol is gone entirely or not at all. Returns the rows
-- deleted per table. Safe to repeat (a second run deletes nothing).
WITH raw AS (DELETE FROM price_klines WHERE symbol = %(symbol)s RETURNING 1),
     r15m AS (DELETE FROM price_klines_15m WHERE symbol = %(symbol)s RETURNING 1),
     r30m AS (DELETE FROM price_klines_30m WHERE symbol = %(symbol)s RETURNING 1),
     r1h AS (DELETE FROM price_klines_1h WHERE symbol = %(symbol)s RETURNING 1),
     r4h AS (DELETE FROM price_klines_4h WHERE symbol = %(symbol)s RETURNING 1),
     r12h AS (DELETE FROM price_klines_12h WHERE symbol = %(symbol)s RETURNING 1),
     r1d AS (DELETE FROM price_klines_1d WHERE symbol = %(symbol)s RETURNING 1),
     gaps AS (DELETE FROM price_kline_gaps WHERE symbol = %(symbol)s RETURNING 1),
     listing AS (DELETE FROM price_kline_listings WHERE symbol = %(symbol)s RETURNING 1),
     live AS (DELETE FROM price_kline_live_state WHERE symbol = %(symbol)s RETURNING 1)
SELECT 'price_klines', count(*) FROM raw
UNION ALL SELECT 'price_klines_15m', count(*) FROM r15m
UNION ALL SELECT 'price_klines_30m', count(*) FROM r30m
UNION ALL SELECT 'price_klines_1h', count(*) FROM r1h
UNION ALL SELECT 'price_klines_4h', count(*) FROM r4h
UNION ALL SELECT 'price_klines_12h', count(*) FROM r12h
UNION ALL SELECT 'price_klines_1d', count(*) FROM r1d
UNION ALL SELECT 'price_kline_gaps', count(*) FROM gaps
UNION ALL SELECT 'price_kline_listings', count(*) FROM listing
UNION ALL SELECT 'price_kline_live_state', count(*) FROM live;
