-- One chunk of a CSV export (and of GET /api/klines as text/csv): ISO 8601 UTC times and the
-- stored decimals exactly as stored, oldest first. The time is the ISO text of the UTC timestamp
-- with 'T' and 'Z' (the reader sets DateStyle ISO): a third cheaper for PostgreSQL than to_char,
-- and the same text for times on the grid (whole seconds). Values are bound client-side
-- (cursor.mogrify): COPY takes no server-side parameters.
COPY (SELECT replace((ts AT TIME ZONE 'UTC')::text, ' ', 'T') || 'Z', open, high, low, close, volume
      FROM price_klines_by_timeframe
      WHERE timeframe = %(timeframe)s AND symbol = %(symbol)s AND ts >= %(start)s AND ts < %(end)s
      ORDER BY ts) TO STDOUT WITH (FORMAT csv)
