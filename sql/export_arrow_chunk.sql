-- One chunk of an export to Parquet/Feather in COPY's binary format: epoch ms and the candle's
-- values as float8, [start, end), oldest first. Every field has a fixed width (8 bytes, no NULLs:
-- the columns are NOT NULL), so the reader turns a chunk into columns without parsing a row
-- (export.py: _arrow_table). numeric -> float8 is PostgreSQL's correctly rounded conversion of the
-- exact decimal, the same double a CSV parser makes of its text. date_part (float8) rather than
-- extract (numeric arithmetic, slower per row): exact for whole milliseconds. Values are bound
-- client-side (cursor.mogrify): COPY takes no server-side parameters.
COPY (SELECT (date_part('epoch', ts) * 1000)::bigint, open::float8, high::float8, low::float8,
             close::float8, volume::float8
      FROM price_klines_by_timeframe
      WHERE timeframe = %(timeframe)s AND symbol = %(symbol)s AND ts >= %(start)s AND ts < %(end)s
      ORDER BY ts) TO STDOUT WITH (FORMAT binary)
