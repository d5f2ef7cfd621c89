"""What one Dagster event write costs, per instance storage: the unit of a backfill's overhead.

    python bench/bench_events.py [--events 300]

A one-op job logs `--events` events of one kind (an asset check evaluation, an asset
materialization, a log line) on three instances: Dagster's default SQLite storage (what a bare
`dagster dev` uses), dagster-postgres as shipped (a new connection per statement) and the
project's pooled PostgreSQL storage (kline_pipeline/instance/storage.py, what the local template
and the production dagster.yaml use). Each figure is the median of `--repeats` runs, in ms per
event, measured inside the op (run start-up excluded). Figures, not tests.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import admin_url_default, throwaway_database

import dagster as dg

KINDS = ("check evaluation", "materialization", "log line")
STORAGES = {
    "sqlite (Dagster's default)": None,
    "dagster-postgres (connection per statement)": "storage:\n  postgres:\n    postgres_url: {url}\n",
    "pooled PostgreSQL (ours)": "".join(
        f"{name}:\n  module: kline_pipeline.instance.storage\n  class: {cls}\n  config:\n    postgres_url: {{url}}\n"
        for name, cls in (("run_storage", "PooledPostgresRunStorage"), ("event_log_storage", "PooledPostgresEventLogStorage"),
                          ("schedule_storage", "PooledPostgresScheduleStorage"))),
}


@dg.asset(check_specs=[dg.AssetCheckSpec("a_check", asset="an_asset")])
def an_asset():  # noqa: ANN201 - Dagster refuses `-> None` on an asset with check outputs
    """Only gives the check and the materializations an asset to name."""


def job_logging(kind: str, count: int, timings: list[float]) -> dg.JobDefinition:
    @dg.op(name="emit")
    def emit(context: dg.OpExecutionContext) -> None:
        t0 = time.perf_counter()
        for i in range(count):
            if kind == "check evaluation":
                context.log_event(dg.AssetCheckEvaluation(asset_key=an_asset.key, check_name="a_check", passed=True,
                                                          metadata={"i": i}))
            elif kind == "materialization":
                context.log_event(dg.AssetMaterialization(an_asset.key, metadata={"i": i}))
            else:
                context.log.info(f"line {i}")
        timings.append((time.perf_counter() - t0) / count)

    @dg.job(name="emit_events")
    def emit_events() -> None:
        emit()

    return emit_events


def measure(config: str | None, count: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        if config:
            Path(home, "dagster.yaml").write_text(config)
        with dg.DagsterInstance.from_config(home) as instance:
            figures = {}
            for kind in KINDS:
                timings: list[float] = []
                job = job_logging(kind, count, timings)
                for _ in range(repeats):
                    job.execute_in_process(instance=instance)
                figures[kind] = round(statistics.median(timings) * 1000, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name, template in STORAGES.items():
        if template is None:
            results[name] = measure(None, args.events, args.repeats)
            continue
        with throwaway_database(args.admin_url, f"events_{len(results)}") as url:
            results[name] = measure(template.format(url=url), args.events, args.repeats)
    print(f"ms per event write, median of {args.repeats} runs of {args.events} events (load {os.getloadavg()[0]:.2f})",
          file=sys.stderr)
    print(f"{'storage':<46}" + "".join(f"{k:>18}" for k in KINDS))
    for name, figures in results.items():
        print(f"{name:<46}" + "".join(f"{figures[k]:>18.2f}" for k in KINDS))
    print("RESULT " + json.dumps({"events": args.events, "repeats": args.repeats, "ms_per_event": results}))


if __name__ == "__main__":
    main()
