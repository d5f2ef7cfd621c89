-- One repair attempt per (symbol, day) re-fetched by an outage repair run.
INSERT INTO price_kline_gap_repairs (symbol, day, attempted_at, outage_before, recovered, still_out, run_id)
SELECT %(symbol)s, d, %(at)s, b, r, s, %(run_id)s
FROM unnest(%(days)s::date[], %(before)s::integer[], %(recovered)s::integer[], %(still_out)s::integer[]) AS t(d, b, r, s)
ON CONFLICT (symbol, day, attempted_at) DO NOTHING;
