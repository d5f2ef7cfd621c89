"""Profile of the slowest stage of our code in a backfill run: the per-partition asset checks.

    python bench/bench_profile.py [--days 31]

In bench_dagster.py's step timings the two check steps take most of a run's execution time.
This loads `--days` days of 1 symbol (one run's worth, PARTITIONS_PER_RUN by default) with
rollups, then evaluates every check (raw and rollup) on every partition exactly as
`evaluate_partitions` does, without Dagster: the total with one shared `Facts` (as in a run),
each check alone (its own `Facts`), SQL statements issued (by sql/ file), and a pyinstrument
profile. The difference to the check steps' time in a real run is Dagster's cost
of recording one AssetCheckEvaluation per check and partition. Prints `RESULT {json}` last.
"""

import argparse
import json
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone

from common import admin_url_default, load_days, throwaway_store

from kline_pipeline.assets import PARTITIONS_PER_RUN
from kline_pipeline.checks import EVALUATORS, Facts
from kline_pipeline.ingest import day_start
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore

SYMBOL = "BTCUSDT"
FIRST = date(2025, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--days", type=int, default=PARTITIONS_PER_RUN)
    args = parser.parse_args()
    try:
        from pyinstrument import Profiler
    except ImportError:  # optional: pip install pyinstrument
        Profiler = None

    now = datetime.now(timezone.utc)
    keys = [f"{FIRST + timedelta(days=i):%Y-%m-%d}|{SYMBOL}" for i in range(args.days)]
    calls: Counter = Counter()
    original_query = KlineStore.query

    def counting_query(self, sql_file, params):
        calls[sql_file] += 1
        return original_query(self, sql_file, params)

    with throwaway_store(args.admin_url, "profile") as store:
        load_days(store, BybitSimulator(), SYMBOL, FIRST, args.days)
        for rollup in ROLLUPS:
            store.refresh_rollup(rollup=rollup.table, symbol=SYMBOL, start=day_start(FIRST),
                                 end=day_start(FIRST) + timedelta(days=args.days))
        def evaluate_all() -> None:  # one check step's work: every check, every key, one Facts
            facts = Facts(store, keys, now)
            for evaluate in EVALUATORS.values():
                for key in keys:
                    evaluate(facts, key)

        evaluate_all()  # warm the engine, plans and caches
        per_check = {}
        KlineStore.query = counting_query
        try:
            t0 = time.perf_counter()
            evaluate_all()
            total = time.perf_counter() - t0
        finally:
            KlineStore.query = original_query
        for check_key, evaluate in sorted(EVALUATORS.items(), key=lambda kv: str(kv[0])):
            t0 = time.perf_counter()
            facts = Facts(store, keys, now)
            for key in keys:
                evaluate(facts, key)
            per_check[f"{check_key.asset_key.path[-1]}:{check_key.name}"] = time.perf_counter() - t0
        profiler = Profiler(interval=0.0005) if Profiler else None
        if profiler:
            profiler.start()
            evaluate_all()
            profiler.stop()
    statements = sum(calls.values())
    print(f"{len(EVALUATORS)} checks x {len(keys)} partitions = {len(EVALUATORS) * len(keys)} evaluations, "
          f"{total:.2f} s without Dagster ({total / (len(EVALUATORS) * len(keys)) * 1000:.1f} ms each)")
    print(f"SQL statements: {statements} ({statements / len(keys):.2f} per partition)")
    for sql_file, n in calls.most_common():
        print(f"  {sql_file:<28} {n:>6}  ({n / len(keys):.2f} per partition)")
    print(f"each check alone (its own queries; shared in a run):\n{'check':<44} {'s':>7} {'ms/partition':>13}")
    for name, seconds in sorted(per_check.items(), key=lambda kv: -kv[1]):
        print(f"{name:<44} {seconds:>7.3f} {seconds / len(keys) * 1000:>13.1f}")
    text = (profiler.output_text(unicode=False, color=False, show_all=False) if profiler
            else "pyinstrument is not installed (pip install pyinstrument): no profile")
    lines = [ln for ln in text.splitlines() if ln.strip()][:60]
    print("--- pyinstrument (all checks, all partitions) ---")
    print("\n".join(lines))
    print("RESULT " + json.dumps({
        "days": args.days, "evaluations": len(EVALUATORS) * len(keys), "seconds": round(total, 3),
        "ms_per_evaluation": round(total / (len(EVALUATORS) * len(keys)) * 1000, 2),
        "statements": statements, "statements_by_file": dict(calls.most_common()),
        "per_check_s": {k: round(v, 3) for k, v in sorted(per_check.items(), key=lambda kv: -kv[1])},
        "profile": "\n".join(lines)}))


if __name__ == "__main__":
    main()
