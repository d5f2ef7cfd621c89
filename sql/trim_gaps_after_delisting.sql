-- A delisting explains every absence from its delivery time on: recorded exchange outages of the
-- symbol from then on are dropped (and one crossing it is cut there), so the gap report says
-- "delisted", not "exchange_outage".
WITH dropped AS (
    DELETE FROM price_kline_gaps
    WHERE symbol = %(symbol)s AND start >= %(delivery_time)s
    RETURNING start
)
UPDATE price_kline_gaps
SET "end" = %(delivery_time)s
WHERE symbol = %(symbol)s AND start < %(delivery_time)s AND "end" > %(delivery_time)s;
