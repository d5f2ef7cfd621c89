-- Take up to `limit` hand-changed (symbol, day) pairs for one sensor tick, oldest change first:
-- unclaimed ones and any left by a tick whose cursor was never stored (it failed before Dagster
-- kept its result), so a pair is requested again until a stored tick took it.
UPDATE price_kline_hand_changes AS h SET claim = %(claim)s
FROM (SELECT symbol, day FROM price_kline_hand_changes
      ORDER BY changed_at, symbol, day LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS t
WHERE h.symbol = t.symbol AND h.day = t.day
RETURNING h.symbol, h.day;
