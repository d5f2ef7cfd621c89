-- Serialise candles_fresh reporting (the live tick and the watchdog sensor) for the transaction:
-- read the last recorded outcomes, record the changed ones, save them — never interleaved.
SELECT pg_advisory_xact_lock(7415826002);
