-- Repair attempts of one symbol for the days of [start, end), oldest first (gaps, doctor).
SELECT day, attempted_at, outage_before, recovered, still_out, run_id
FROM price_kline_gap_repairs
WHERE symbol = %(symbol)s AND day >= (%(start)s::timestamptz AT TIME ZONE 'UTC')::date
  AND day <= ((%(end)s::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date
  AND (%(since)s::timestamptz IS NULL OR attempted_at >= %(since)s)
ORDER BY attempted_at, day;
