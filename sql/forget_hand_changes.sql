-- The (symbol, day) pairs taken by the rollup sensor tick whose cursor Dagster has stored: that
-- tick's run requests were submitted with it, so the pairs are done. A pair changed again after it
-- was taken has claim NULL (the trigger resets it) and stays for the next tick.
DELETE FROM price_kline_hand_changes WHERE claim = %(claim)s;
