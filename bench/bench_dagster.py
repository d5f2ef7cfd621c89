"""The user's path, end to end: `dagster dev`, a symbol, a UI-style backfill, until every check has a result.

    python bench/bench_dagster.py [--days 365] [--one-run-days 30] [--scale-symbols 10 --scale-days 730]
                                  [--skip-one-run] [--skip-scale]

Session A: `dagster dev -w <tmp workspace> -h 127.0.0.1 -p <free port>` with a fresh DAGSTER_HOME
holding the local instance template (kline_pipeline/instance/local.yaml), KLINE_DATABASE_URL =
a throwaway database on the local server, BYBIT_BASE_URL = the simulator in its own process.
The workspace has two code locations: ours (kline_pipeline.definitions) and the floors
(bench/floor_definitions.py: the same partitions, backfill policy, pool and executor, no-op
assets; `floor_*` also has our checks as no-ops that record the same per-partition results,
`bare_*` has no checks). Symbols are added with GraphQL `addDynamicPartition`, backfills
launched with `launchPartitionBackfill` like the UI does; each is timed from the launch until
the backfill is COMPLETED_SUCCESS and every check of every partition has a result in the
instance. Then, in the same session, the scale run (many symbols x years) and the timing of
the asset page's partition-status query.

The backfill daemon wakes on a steady 30-second grid (the template runs it with threads), so a
backfill launched at a random moment first waits 0-30 s (15 s on average) for its first
iteration, whatever it contains. That wait is the same for every layout and is not part of
either side's cost; left to chance it decides ratios by whole 30 s steps. So every measured
backfill is launched 2 s before a daemon iteration (the grid is read from the previous
backfill's completion time; a one-day warm-up backfill sets it first), and the figures are
"from launch" with that constant 2 s wait.

Session B: a second `dagster dev` (own DAGSTER_HOME) on bench/one_run_definitions.py (our
definitions without a backfill policy: one run per partition) backfilling `--one-run-days`
partitions, extrapolated linearly to `--days`.

The live_refresh schedule is stopped in both sessions (it would add a run every 5 minutes to
whichever backfill happens to be measured); the rollup automation sensor keeps running.
Prints a table and, last, one line `RESULT {json}` for bench/run_all.py.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

sys.path.insert(0, str(ROOT))  # the tests' process helpers (the bench runs from a checkout, like the tests)

from common import admin_url_default, analyze_unless_autovacuum, throwaway_database  # noqa: E402

from kline_pipeline_tests.processes import free_port, simulator_process, stop_group, wait_for_http  # noqa: E402

from kline_pipeline.assets import PARTITIONS_PER_RUN  # noqa: E402
from kline_pipeline.instance.env import DAGSTER_ENV  # noqa: E402
from kline_pipeline.rollups import ROLLUPS  # noqa: E402

LISTED = "2020-01-01"
P1_SYMBOL = "BTCUSDT"
ONE_RUN_SYMBOL = "ETHUSDT"
P1_FIRST = date(2025, 1, 1)
WARM_UP_DAY = date(2024, 12, 31)  # outside every measured range
SCALE_FIRST = date(2024, 1, 1)
ROLLUP_TABLES = [rollup.table for rollup in ROLLUPS]
OURS = ["price_klines_5m", *ROLLUP_TABLES]
FLOOR = [f"floor_{a}" for a in OURS]  # no-op assets + no-op checks recording the same results
BARE = [f"bare_{a}" for a in OURS]  # no-op assets, no checks
DAEMON_LOOP_S = 30.0  # dagster/_daemon/controller.py DEFAULT_DAEMON_INTERVAL_SECONDS
LAUNCH_BEFORE_ITERATION_S = 2.0

PARTITION_STATUS_QUERY = """
query AssetPartitions($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      partitionStats { numMaterialized numPartitions numFailed numMaterializing }
      assetPartitionStatuses {
        __typename
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey
            secondaryDim {
              __typename
              ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
              ... on TimePartitionStatuses { ranges { startKey endKey status } }
            }
          }
        }
      }
    }
  }
}
"""


CHECK_STATUS_QUERY = """
query CheckPartitions($assetKey: AssetKeyInput!, $name: String!) {
  assetNodeOrError(assetKey: $assetKey) { ... on AssetNode { assetCheckOrError(checkName: $name) { ... on AssetCheck {
    executionForLatestMaterialization { status }
    partitionStatuses { ... on AssetCheckMultiPartitionStatuses { ranges { primaryDimStartKey primaryDimEndKey
      secondaryDim { ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions } } } } } } } } }
}
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class DagsterDev:
    """`dagster dev` on a free port with its own DAGSTER_HOME (the local instance template)."""

    def __init__(self, workdir: Path, locations: dict[str, str], env: dict[str, str],
                 keep_log: Path | None = None) -> None:
        self.keep_log = keep_log
        self.home = workdir / "dagster_home"
        self.home.mkdir(parents=True)
        shutil.copyfile(ROOT / "kline_pipeline" / "instance" / "local.yaml", self.home / "dagster.yaml")
        self.workspace = workdir / "workspace.yaml"
        entries = []
        for name, target in locations.items():
            if target.endswith(".py"):
                entries.append(f"  - python_file:\n      relative_path: {target}\n      location_name: {name}\n"
                               f"      working_directory: {ROOT}\n")
            else:
                entries.append(f"  - python_module:\n      module_name: {target}\n      location_name: {name}\n"
                               f"      working_directory: {ROOT}\n")
        self.workspace.write_text("load_from:\n" + "".join(entries))
        self.locations = list(locations)
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(self.home)}
        # This process reads the same instance (run records, check results): same storage URL.
        os.environ["DAGSTER_PG_URL"] = self.env["DAGSTER_PG_URL"]
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.logfile = workdir / "dagster_dev.log"
        self.proc: subprocess.Popen | None = None
        self.daemon_grid: float | None = None  # epoch seconds of one backfill-daemon iteration

    def __enter__(self) -> "DagsterDev":
        t0 = time.perf_counter()
        with self.logfile.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", str(self.workspace), "-h", "127.0.0.1", "-p",
                 str(self.port)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_loaded()
        except BaseException:
            stop_group(self.proc)  # __exit__ does not run when __enter__ raises
            raise
        self.startup_s = time.perf_counter() - t0
        return self

    def _wait_loaded(self) -> None:
        wait_for_http(f"{self.base}/server_info", self.proc, self.logfile, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            data = self.gql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                            "locationOrLoadError { __typename } } } } }")
            entries = data["workspaceOrError"]["locationEntries"]
            states = {e["name"]: (e["loadStatus"], (e["locationOrLoadError"] or {}).get("__typename")) for e in entries}
            if all(states.get(n) == ("LOADED", "RepositoryLocation") for n in self.locations):
                break
            if any(s[1] == "PythonError" for s in states.values()) or time.monotonic() > deadline:
                raise RuntimeError(f"code locations did not load: {states}\n{self.logfile.read_text()[-3000:]}")
            time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        if self.proc:
            stop_group(self.proc)
        if self.keep_log:  # the daemon's iterations and every run's events, for a closer look
            shutil.copyfile(self.logfile, self.keep_log)

    def gql(self, query: str, variables: dict | None = None, timeout: float = 300) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"GraphQL HTTP {exc.code}: {exc.read()[:2000]!r}") from None
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def add_symbols(self, location: str, symbols: list[str]) -> None:
        for symbol in symbols:
            data = self.gql(
                """mutation($loc: String!, $key: String!) { addDynamicPartition(repositorySelector:
                {repositoryLocationName: $loc, repositoryName: "__repository__"}, partitionsDefName: "symbols",
                partitionKey: $key) { __typename ... on PythonError { message } } }""",
                {"loc": location, "key": symbol})
            kind = data["addDynamicPartition"]["__typename"]
            if kind not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
                raise RuntimeError(f"addDynamicPartition {symbol}: {data}")

    def stop_schedule(self, location: str, name: str) -> None:
        subprocess.run([sys.executable, "-m", "dagster", "schedule", "stop", name, "-w", str(self.workspace),
                        "-l", location], cwd=ROOT, env=self.env, check=True, capture_output=True)

    def launch_backfill(self, assets: list[str], ranges: list[tuple[str, str]]) -> str:
        params = {"partitionsByAssets": [
            {"assetKey": {"path": [a]}, "partitions": {"ranges": [{"start": s, "end": e} for s, e in ranges]}}
            for a in assets]}
        data = self.gql(
            """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } } }""",
            {"p": params})
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {result}")
        return result["backfillId"]

    def wait_for_launch_slot(self) -> float:
        """Sleep until LAUNCH_BEFORE_ITERATION_S before the daemon's next iteration; seconds slept."""
        if self.daemon_grid is None:
            return 0.0
        now = time.time()
        target = self.daemon_grid - LAUNCH_BEFORE_ITERATION_S
        while target < now + 0.5:
            target += DAEMON_LOOP_S
        time.sleep(target - now)
        return target - now

    def note_completion(self, backfill_id: str) -> None:
        """The daemon marked this backfill complete in an iteration: remember that iteration's time."""
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            backfill = instance.get_backfill(backfill_id)
        if backfill and backfill.backfill_end_timestamp:
            self.daemon_grid = backfill.backfill_end_timestamp

    def backfill_status(self, backfill_id: str) -> str:
        data = self.gql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            __typename ... on PartitionBackfill { status } } }""", {"id": backfill_id})
        return data["partitionBackfillOrError"]["status"]

    def time_check_page(self, asset: str, check: str, repeats: int = 5) -> tuple[float, float]:
        """(first, median of the rest) seconds of a check's Partitions tab query (`partitionStatuses`)."""
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.gql(CHECK_STATUS_QUERY, {"assetKey": {"path": [asset]}, "name": check})
            times.append(time.perf_counter() - t0)
        rest = sorted(times[1:]) or times
        return times[0], rest[len(rest) // 2]

    def time_partition_query(self, asset: str, repeats: int = 5) -> tuple[float, float, dict]:
        """(first, median of the rest) seconds of the asset page's partition-status query."""
        times, stats = [], {}
        for _ in range(repeats):
            t0 = time.perf_counter()
            data = self.gql(PARTITION_STATUS_QUERY, {"assetKey": {"path": [asset]}})
            times.append(time.perf_counter() - t0)
            stats = data["assetNodeOrError"]["partitionStats"]
        rest = sorted(times[1:]) or times
        return times[0], rest[len(rest) // 2], stats


def keys_for(symbols: list[str], first: date, days: int) -> list[str]:
    return [f"{first + timedelta(days=i):%Y-%m-%d}|{s}" for s in symbols for i in range(days)]


def ranges_for(symbols: list[str], first: date, days: int) -> list[tuple[str, str]]:
    last = first + timedelta(days=days - 1)
    return [(f"{first:%Y-%m-%d}|{s}", f"{last:%Y-%m-%d}|{s}") for s in symbols]


def expected_check_keys(assets: list[str]) -> list:
    """The check keys defined on `assets`, read from the definitions module that holds them."""
    if assets[0].startswith("floor_"):
        from floor_definitions import FLOOR_CHECKS

        return sorted((spec.key for c in FLOOR_CHECKS for spec in c.check_specs), key=str)
    from kline_pipeline.checks import EVALUATORS

    return sorted(EVALUATORS, key=str)


def run_backfill(dev: DagsterDev, assets: list[str], symbols: list[str], first: date, days: int, *,
                 with_checks: bool, timeout: float) -> dict:
    """Launch like the UI, wait for COMPLETED_SUCCESS and (with_checks) a result for every check
    of every partition; return the figures."""
    import dagster as dg
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as S

    partitions = keys_for(symbols, first, days)
    dev.wait_for_launch_slot()
    t0 = time.perf_counter()
    t0_epoch = time.time()
    backfill_id = dev.launch_backfill(assets, ranges_for(symbols, first, days))
    status = None
    while time.perf_counter() - t0 < timeout:
        status = dev.backfill_status(backfill_id)
        if status not in ("REQUESTED", "IN_PROGRESS", "CANCELING"):
            break
        time.sleep(1.0)
    backfill_s = time.perf_counter() - t0
    if status != "COMPLETED_SUCCESS":
        raise RuntimeError(f"backfill {backfill_id} ended {status} after {backfill_s:.0f} s; see {dev.logfile}")
    dev.note_completion(backfill_id)
    figures: dict = {"backfill_id": backfill_id, "partitions": len(partitions), "assets": len(assets),
                     "backfill_s": round(backfill_s, 1)}
    with dg.DagsterInstance.from_config(str(dev.home)) as instance:
        if with_checks:
            check_keys = expected_check_keys(assets)
            expected = len(partitions) * len(check_keys)  # every check records a result on every partition
            done_states = {S.SUCCEEDED, S.FAILED}
            while True:
                infos = []
                for i in range(0, len(partitions), 2000):
                    infos += instance.event_log_storage.get_asset_check_partition_info(
                        check_keys, partition_keys=partitions[i:i + 2000])
                done = [x for x in infos if x.latest_execution_status in done_states]
                if len(done) >= expected or time.perf_counter() - t0 > timeout:
                    break
                time.sleep(1.0)
            figures["checks_expected"] = expected
            figures["checks_with_result"] = len(done)
            figures["checks_passed"] = sum(x.latest_execution_status == S.SUCCEEDED for x in done)
        figures["wall_s"] = round(time.perf_counter() - t0, 1)
        records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        runs = [r.dagster_run for r in records]
        figures["runs"] = len(runs)
        # Every event Dagster wrote for the backfill's runs (planned and recorded materializations,
        # check results, step and run events, log lines): what this layout costs Dagster per partition.
        figures["events"] = sum(len(instance.get_records_for_run(r.run_id, limit=1_000_000).records) for r in runs)
        figures["events_per_partition"] = round(figures["events"] / len(partitions), 1)
        run_seconds, steps, timeline = [], {}, []
        for record in records:
            run = record.dagster_run
            stats = instance.get_run_stats(run.run_id)
            if stats.start_time and stats.end_time:
                run_seconds.append(stats.end_time - stats.start_time)
            # When each run was created (the daemon's iteration), started (dequeued) and ended,
            # seconds after the launch: shows where the wall time goes.
            timeline.append([round(t - t0_epoch, 1) if t else None for t in
                             (record.create_timestamp.timestamp(), stats.start_time, stats.end_time)])
            for step in instance.get_run_step_stats(run.run_id):
                if step.start_time and step.end_time:
                    steps[step.step_key] = steps.get(step.step_key, 0.0) + step.end_time - step.start_time
        figures["run_exec_s_sum"] = round(sum(run_seconds), 1)
        figures["run_exec_s_median"] = round(sorted(run_seconds)[len(run_seconds) // 2], 2) if run_seconds else None
        figures["timeline"] = sorted(timeline, key=lambda t: t[0])
        figures["first_run_created_s"] = figures["timeline"][0][0] if timeline else None
        figures["last_run_ended_s"] = max((t[2] for t in timeline if t[2]), default=None)
        figures["step_s"] = {k: round(v, 2) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default=admin_url_default())
    parser.add_argument("--days", type=int, default=365, help="P1: days of 1 symbol")
    parser.add_argument("--one-run-days", type=int, default=30, help="one-run-per-partition layout: days measured")
    parser.add_argument("--scale-symbols", type=int, default=10)
    parser.add_argument("--scale-days", type=int, default=730)
    parser.add_argument("--skip-one-run", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600, help="per backfill, seconds")
    parser.add_argument("--ui-symbols", type=int, default=200,
                        help="after the backfills, register this many symbols in all and time the asset and check pages")
    parser.add_argument("--keep-logs", type=Path, help="copy each session's `dagster dev` log into this directory")
    args = parser.parse_args()

    scale_symbols = [f"SCALE{i}USDT" for i in range(args.scale_symbols)]
    result: dict = {"days": args.days, "one_run_days": args.one_run_days,
                    "scale": None if args.skip_scale else {"symbols": args.scale_symbols, "days": args.scale_days}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kline_bench_dagster_") as tmp, \
            simulator_process(Path(tmp) / "simulator.log", *[a for s in [P1_SYMBOL, ONE_RUN_SYMBOL, *scale_symbols]
                                                          for a in ("--instrument", f"{s}:{LISTED}")]) as sim_url, \
            throwaway_database(args.admin_url, "dagster") as db_url, \
            throwaway_database(args.admin_url, "storage_a") as storage_a, \
            throwaway_database(args.admin_url, "storage_b") as storage_b:
        # Each session's Dagster storage (the template's pooled PostgreSQL storage) in its own database.
        # What `kline-pipeline dev` gives Dagster's processes (kline_pipeline/instance/env.py).
        env = {**DAGSTER_ENV, "KLINE_DATABASE_URL": db_url, "BYBIT_BASE_URL": sim_url, "DAGSTER_PG_URL": storage_a}
        workdir = Path(tmp)
        (workdir / "a").mkdir()
        log("session A: dagster dev with kline_pipeline + floor")
        with DagsterDev(workdir / "a", {"kline_pipeline": "kline_pipeline.definitions",
                                        "floor": str(BENCH / "floor_definitions.py")}, env,
                       keep_log=args.keep_logs / "session_a.log" if args.keep_logs else None) as dev:
            result["startup_s"] = round(dev.startup_s, 1)
            dev.stop_schedule("kline_pipeline", "live_refresh")
            dev.add_symbols("kline_pipeline", [P1_SYMBOL])
            log("warm-up: 1 day of the bare graph (finds the daemon's iteration grid)")
            run_backfill(dev, BARE, [P1_SYMBOL], WARM_UP_DAY, 1, with_checks=False, timeout=args.timeout)
            log(f"floor backfill (no-op assets and checks): 1 x {args.days} days")
            result["floor"] = run_backfill(dev, FLOOR, [P1_SYMBOL], P1_FIRST, args.days, with_checks=True,
                                           timeout=args.timeout)
            log(f"  {result['floor']['wall_s']} s; bare floor (no checks): 1 x {args.days} days")
            result["bare"] = run_backfill(dev, BARE, [P1_SYMBOL], P1_FIRST, args.days, with_checks=False,
                                          timeout=args.timeout)
            log(f"  {result['bare']['wall_s']} s; ours: 1 x {args.days} days")
            result["ours"] = run_backfill(dev, OURS, [P1_SYMBOL], P1_FIRST, args.days, with_checks=True,
                                          timeout=args.timeout)
            log(f"  {result['ours']['wall_s']} s")
            first, median, stats = dev.time_partition_query("price_klines_5m")
            result["ui_query_p1"] = {"first_s": round(first, 3), "median_s": round(median, 3), "stats": stats}
            if not args.skip_scale:
                dev.add_symbols("kline_pipeline", scale_symbols)
                log(f"scale backfill: {args.scale_symbols} x {args.scale_days} days")
                result["scale_run"] = run_backfill(dev, OURS, scale_symbols, SCALE_FIRST, args.scale_days,
                                                   with_checks=True, timeout=args.timeout)
                log(f"  {result['scale_run']['wall_s']} s")
                first, median, stats = dev.time_partition_query("price_klines_5m")
                result["ui_query_scale"] = {"first_s": round(first, 3), "median_s": round(median, 3), "stats": stats}
            if args.ui_symbols:
                many = [f"UI{i}USDT" for i in range(args.ui_symbols - 1 - (0 if args.skip_scale else args.scale_symbols))]
                dev.add_symbols("kline_pipeline", many)
                log(f"{args.ui_symbols} symbols registered: timing the asset page and a check page")
                if analyze_unless_autovacuum(storage_a):
                    log("  the server runs without autovacuum: Dagster's storage ANALYZEd first, as autovacuum would")
                first, median, stats = dev.time_partition_query("price_klines_5m")
                check_first, check_median = dev.time_check_page("price_klines_5m", "no_missing_candles")
                result["ui_pages_many_symbols"] = {
                    "symbols": args.ui_symbols, "partitions_per_asset": stats["numPartitions"],
                    "asset_page_first_s": round(first, 3), "asset_page_median_s": round(median, 3),
                    "check_page_first_s": round(check_first, 3), "check_page_median_s": round(check_median, 3)}
        if not args.skip_one_run:
            (workdir / "b").mkdir()
            log("session B: dagster dev with one-run-per-partition definitions")
            with DagsterDev(workdir / "b", {"kline_pipeline": str(BENCH / "one_run_definitions.py")},
                            {**env, "DAGSTER_PG_URL": storage_b},
                            keep_log=args.keep_logs / "session_b.log" if args.keep_logs else None) as dev:
                dev.stop_schedule("kline_pipeline", "live_refresh")
                dev.add_symbols("kline_pipeline", [ONE_RUN_SYMBOL])
                log("warm-up: 1 day (finds the daemon's iteration grid)")
                run_backfill(dev, OURS, [ONE_RUN_SYMBOL], WARM_UP_DAY, 1, with_checks=True, timeout=args.timeout)
                log(f"one run per partition: {args.one_run_days} days")
                result["one_run"] = run_backfill(dev, OURS, [ONE_RUN_SYMBOL], P1_FIRST, args.one_run_days,
                                                 with_checks=True, timeout=args.timeout)
                log(f"  {result['one_run']['wall_s']} s")
    result["total_s"] = round(time.perf_counter() - t_all, 1)

    ours, floor, bare = result["ours"], result["floor"], result["bare"]
    result["ours_over_floor"] = round(ours["wall_s"] / floor["wall_s"], 2)
    result["ours_over_bare"] = round(ours["wall_s"] / bare["wall_s"], 2)
    rows = [
        (f"ours: 1 symbol x {args.days} days, 7 assets + checks (s)", ours["wall_s"], f"{ours['runs']} runs"),
        ("floor: no-op assets + no-op checks, same layout (s)", floor["wall_s"],
         f"{floor['runs']} runs, checks {floor['checks_with_result']}/{floor['checks_expected']}"),
        ("bare floor: no-op assets, no checks (s)", bare["wall_s"], f"{bare['runs']} runs"),
        ("ours / floor", result["ours_over_floor"], "target <= 1.3"),
        ("ours / bare floor", result["ours_over_bare"], "for information"),
        ("checks with a result / expected", f"{ours['checks_with_result']}/{ours['checks_expected']}", ""),
        ("asset page partition query at P1 size (ms, median)", round(result["ui_query_p1"]["median_s"] * 1000), ""),
        ("Dagster events per (day, symbol): ours / floor", f"{ours['events_per_partition']} / "
         f"{floor['events_per_partition']}", f"bare {bare['events_per_partition']}"),
    ]
    if "ui_pages_many_symbols" in result:
        ui = result["ui_pages_many_symbols"]
        rows += [(f"{ui['symbols']} symbols: asset page partition query (ms, median; first)",
                  round(ui["asset_page_median_s"] * 1000), f"first {ui['asset_page_first_s'] * 1000:.0f}; target <= 1000"),
                 (f"{ui['symbols']} symbols: check Partitions tab query (ms, median; first)",
                  round(ui["check_page_median_s"] * 1000), f"first {ui['check_page_first_s'] * 1000:.0f}; target <= 1000")]
    if "one_run" in result:
        one = result["one_run"]
        extrapolated = one["wall_s"] * args.days / args.one_run_days
        result["one_run"]["extrapolated_s"] = round(extrapolated, 1)
        result["one_run_speedup"] = round(extrapolated / ours["wall_s"], 1)
        rows += [(f"one run per partition: {args.one_run_days} days (s)", one["wall_s"], f"{one['runs']} runs"),
                 (f"  extrapolated to {args.days} days (s)", round(extrapolated), ""),
                 (f"speed-up of multi_run({PARTITIONS_PER_RUN}) over it", result["one_run_speedup"], "target >= 20")]
    if "scale_run" in result:
        sc = result["scale_run"]
        per_p1 = ours["wall_s"] / ours["partitions"]
        per_sc = sc["wall_s"] / sc["partitions"]
        result["scale_per_partition_ratio"] = round(per_sc / per_p1, 2)
        rows += [(f"scale: {args.scale_symbols} symbols x {args.scale_days} days (s)", sc["wall_s"],
                  f"{sc['runs']} runs, {sc['partitions']} partitions"),
                 ("  per partition (ms) vs P1 per partition (ms)", round(per_sc * 1000), f"{per_p1 * 1000:.0f}"),
                 ("  per-partition ratio scale / P1", result["scale_per_partition_ratio"], "linear or better: <= 1"),
                 ("  checks with a result / expected", f"{sc['checks_with_result']}/{sc['checks_expected']}", ""),
                 ("  asset page partition query after scale (ms, median)",
                  round(result["ui_query_scale"]["median_s"] * 1000), "")]
    print(f"dagster dev (webserver + daemon), local instance template, simulator, PostgreSQL; startup "
          f"{result['startup_s']} s (not timed)")
    print(f"{'what':<58} {'figure':>12}  note")
    for what, figure, note in rows:
        print(f"{what:<58} {figure!s:>12}  {note}")
    print(f"steps of ours, summed over runs (s): {json.dumps(ours['step_s'])}")
    for name in ("floor", "bare", "ours"):
        print(f"{name} runs [created, started, ended] s after launch: {json.dumps(result[name]['timeline'])}")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
