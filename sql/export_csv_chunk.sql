-- One chunk of a CSV export (and of GET /api/klines as text/csv): ISO 8601 UTC times and the
-- stored decimals exactly as stored, oldest first. Values are bound client-side (cursor.mogrify):
-- COPY takes no server-side parameters.
COPY (SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), open, high, low, close, volume
      FROM price_klines_by_timeframe
      WHERE timeframe = %(timeframe)s AND symbol = %(symbol)s AND ts >= %(start)s AND ts < %(end)s
      ORDER BY ts) TO STDOUT WITH (FORMAT csv)
