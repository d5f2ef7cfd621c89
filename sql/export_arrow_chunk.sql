-- One chunk of an export to Parquet/Feather, as CSV text for Arrow's C++ reader: epoch ms and the
-- exact decimals of [start, end), oldest first. date_part (float8) rather than extract (numeric
-- arithmetic, slower per row): exact for whole milliseconds. Values are bound client-side
-- (cursor.mogrify): COPY takes no server-side parameters.
COPY (SELECT (date_part('epoch', ts) * 1000)::bigint, open, high, low, close, volume
      FROM price_klines_by_timeframe
      WHERE timeframe = %(timeframe)s AND symbol = %(symbol)s AND ts >= %(start)s AND ts < %(end)s
      ORDER BY ts) TO STDOUT WITH (FORMAT csv)
