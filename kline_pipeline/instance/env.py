"""The environment Dagster's own processes need for this project: variables Dagster reads, not us.

`kline-pipeline dev` starts `dagster dev` with it (a user's own value wins), bench/bench_dagster.py
does the same, the Helm values set it for the daemon and the code server (whose runs inherit it),
and docs/deploy.md says how for `dagster dev` / `dagster-daemon run`.
"""

CHUNK_SIZE_ENV = "DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE"
"""Read by the backfill daemon: look at a backfill's status after this many queued runs. 1, so a
cancel stops run submission after the run being created (kline_pipeline/cancel.py); Dagster's
default of 25 kept a canceled backfill queueing runs for minutes."""

EVENT_BATCH_ENV = "DAGSTER_EVENT_BATCH_SIZE"
"""Read by every process that writes Dagster events: write up to this many of a batch of
materializations (a range run's per-partition materializations of one asset; a new run's planned
materializations) in one statement instead of one write each. Dagster's default, 0, writes them
one by one: 644 materializations of a 92-day run of our seven assets cost ~8 s of a 28 s run
(bench: `python bench/bench_dagster.py --skip-scale --skip-one-run`). Check results cannot be
batched by Dagster 1.13."""

EVENT_BATCH_SIZE = 1000
"""More than a run's largest batch (7 assets x 92 partitions of planned materializations)."""

DAGSTER_ENV = {CHUNK_SIZE_ENV: "1", EVENT_BATCH_ENV: str(EVENT_BATCH_SIZE)}
