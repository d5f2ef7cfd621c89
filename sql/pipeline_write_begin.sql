-- This connection writes for the pipeline (DayWriter): the hand-change trigger
-- (schema_010_hand_changes.sql) skips its statements. is_local: this transaction only, or the session.
SELECT set_config('kline.pipeline_write', 'on', %(is_local)s);
