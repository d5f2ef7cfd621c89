"""The benchmarks at tiny sizes, so they never rot (figures are not asserted; the output is).

`bench/run_all.py --smoke` runs every benchmark script (ingest, rollups, checks, SQL plans,
profile, event writes, rollup sensor, live ticks) on 3 days and 1–5 symbols against the local
PostgreSQL and writes its Markdown
report to a temp file; the `dagster dev` benchmark (P1 and scale) takes minutes (the backfill
daemon loops every 30 s), so here its code locations and GraphQL documents are checked instead
of run. The real figures: `python bench/run_all.py` (docs/performance.md).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kline_pipeline.assets import PARTITIONS_PER_RUN
from kline_pipeline_tests.conftest import _admin_url

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NUMBER = r"\d[\d,]*(?:\.\d+)?"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[str, str]:
    """(stdout of run_all.py --smoke, the Markdown it wrote)."""
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "performance.md"
    admin_url = _admin_url(tmp_path_factory.mktemp("pg"))  # the local server, else the embedded one
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=400, cwd=ROOT, env={**os.environ, "KLINE_TEST_PG_URL": admin_url},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, out.read_text(encoding="utf-8")


def test_run_all_prints_the_table_with_figures(smoke):
    stdout, _ = smoke
    assert re.search(r"^what\s+figure\s+target verdict$", stdout, re.M)
    assert re.search(r"^machine: \d+ cores, ", stdout, re.M)
    for what in ("P2 ingest 1 symbol x 3 days", "P2 ingest peak RSS", "P3 refresh six rollups",
                 "P3 one day's refresh, 5x / 1x history", "P4 gap report over 3 days",
                 "P4 one partition's no_missing_candles", "Events: one Dagster event write",
                 "Sensor: rollup_refresh_sensor tick with nothing new, 1 symbols",
                 "Sensor: rollup_refresh_sensor tick with nothing new, 5 symbols",
                 "Sensor: tick after 92 new raw days, 5 symbols", "Live: 2 symbols, first tick",
                 "Live: 2 symbols, steady tick", "Live: 2 symbols, oldest symbol's newest candle",
                 "Live: steady tick of 2 symbols with +3 days stored / without"):
        line = next((ln for ln in stdout.splitlines() if ln.startswith(what)), None)
        assert line is not None, f"row {what!r} missing:\n{stdout}"
        assert re.search(NUMBER, line[len(what):]), line
        assert re.search(r" (n/a \(smoke size\)|figure|PASS|FAIL)$", line), line
    assert re.search(r"^total bench runtime: \d+ s$", stdout, re.M)


def test_report_has_table_machine_sizes_plans_and_every_output(smoke):
    _, md = smoke
    assert "| what | figure | target | verdict | machine |" in md
    assert "- **Machine**: " in md and "- **Load average**" in md
    assert "P1 and scale: not run (--smoke)" in md
    rows = [ln for ln in md.splitlines() if ln.startswith(("| P", "| Live", "| Events", "| Sensor"))]
    # P2 3, P3 2, P4 2, events 1, sensor 2 x 2 sizes, live 3 x 1 size + the history ratio
    assert len(rows) == 16 and all(re.search(NUMBER, r.split("|")[2]) for r in rows), rows
    # SQL plans: the rollup refresh's nested statements and the gap-holes query, with the index named.
    assert "Index Cond" in md and "Buffers: shared" in md and "price_klines_pkey" in md
    assert re.search(r"used: rollup refresh (True|False)", md)
    # Every script's own table made it into the report.
    for header in (r"stage\s+rate limit\s+candles\s+stored\s+requests\s+seconds\s+candles/s\s+peak RSS MB",
                   r"history ratio 5x/1x\s+" + NUMBER, r"gap report over the whole range .*\s" + NUMBER,
                   r"tick\s+wall s\s+events\s+mats\s+checks\s+oldest newest candle \(min\)",
                   r"history: 2 symbols, steady tick .* ratio " + NUMBER,
                   r"symbols\s+partitions/asset\s+idle tick ms\s+92 new days: ms",
                   r"storage\s+check evaluation\s+materialization\s+log line",
                   r"\d+ checks x 3 partitions = \d+ evaluations", r"SQL statements: \d+"):
        assert re.search(header, md), header


def test_dagster_bench_locations_and_graphql_documents_are_valid():
    """The P1 benchmark's floor and one-run-per-partition code locations load with the intended
    backfill policies (in a fresh process: one_run_definitions patches while importing), and its
    GraphQL documents validate against dagster-graphql's schema."""
    res = {}
    for name in ("floor_definitions", "one_run_definitions"):  # each in its own process, like a code server
        code = (
            "import json, runpy\n"
            f"defs = runpy.run_path({str(BENCH / (name + '.py'))!r})['defs']\n"
            "g = defs.resolve_asset_graph()\n"
            "print(json.dumps([{k.to_user_string(): str(g.get(k).backfill_policy) for k in g.get_all_asset_keys()},"
            " len(g.asset_check_keys)]))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=BENCH)
        assert proc.returncode == 0, proc.stderr[-3000:]
        res[name], res[name + "_checks"] = json.loads(proc.stdout.strip().splitlines()[-1])
    # Two no-op graphs: `floor_*` with the same per-partition checks as ours (3 raw + 6 rollup;
    # freshness records nothing for history), `bare_*` without checks.
    assert len(res["floor_definitions"]) == 14 and res["floor_definitions_checks"] == 9
    assert set(res["floor_definitions"].values()) == {
        f"BackfillPolicy.multi_run(max_partitions_per_run={PARTITIONS_PER_RUN})"}
    assert set(res["one_run_definitions"]) == {"price_klines_5m", "price_klines_15m", "price_klines_30m",
                                                "price_klines_1h", "price_klines_4h", "price_klines_12h",
                                                "price_klines_1d"}
    assert set(res["one_run_definitions"].values()) == {"None"}
    from kline_pipeline.definitions import defs

    assert res["one_run_definitions_checks"] == len(defs.resolve_asset_graph().asset_check_keys) > 0

    from dagster_graphql.schema import create_schema
    from graphql import parse, validate

    source = (BENCH / "bench_dagster.py").read_text(encoding="utf-8")
    documents = re.findall(r'"""((?:query|mutation).*?)"""', source, re.S) + [
        re.search(r'PARTITION_STATUS_QUERY = """(.*?)"""', source, re.S).group(1)]
    assert len(documents) == 4  # addDynamicPartition, launchPartitionBackfill, backfill status, partitions
    schema = create_schema().graphql_schema
    for doc in documents:
        assert validate(schema, parse(doc)) == [], doc
