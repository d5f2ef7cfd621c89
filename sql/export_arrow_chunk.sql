-- One chunk of an export to Parquet/Feather, as CSV text for Arrow's C++ reader: epoch ms and the
-- exact decimals of [start, end), oldest first. Values are bound client-side (cursor.mogrify):
-- COPY takes no server-side parameters.
COPY (SELECT (extract(epoch FROM ts) * 1000)::bigint, open, high, low, close, volume
      FROM price_klines_by_timeframe
      WHERE timeframe = %(timeframe)s AND symbol = %(symbol)s AND ts >= %(start)s AND ts < %(end)s
      ORDER BY ts) TO STDOUT WITH (FORMAT csv)
