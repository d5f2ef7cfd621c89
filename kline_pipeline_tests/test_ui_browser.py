"""The Dagster UI in a real browser, after a user's backfills: what the asset and check pages show.

One `dagster dev` serves a fresh local instance (the packaged template, its PostgreSQL storage
in a throwaway database) with the bundled simulator in its own process, which has an exchange
outage on 2025-01-03 06:00-07:00. As a user would, through the UI's own GraphQL mutations: add
BTCUSDT, backfill 2025-01-01..05 (one range run) and 2025-01-10 (a one-day backfill) for the raw
asset and the six rollups. Headless Chromium (Playwright) then reads the asset page, the checks
list and each check's Partitions tab; `AssetCheck.partitionStatuses` (the field that tab renders)
is checked after the backfills and after a live run. Skipped only where Chromium or Playwright
is missing (`.ci/run` installs both; Playwright never downloads a browser here).

Save the screenshots for the docs with: KLINE_SAVE_SCREENSHOT=1 python -m pytest kline_pipeline_tests/test_ui_browser.py
"""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from kline_pipeline.instance.setup import dagster_home
from kline_pipeline.gaps import gap_report
from kline_pipeline.rollups import ROLLUPS
from kline_pipeline.store import KlineStore
from kline_pipeline_tests.conftest import throwaway_database
from kline_pipeline_tests.processes import (
    ROOT,
    add_symbol,
    dagster_dev,
    graphql,
    launch_backfill,
    run_job,
    simulator_process,
    wait_for_backfill,
    wait_until,
)

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

ASSETS = ["price_klines_5m", *(r.table for r in ROLLUPS)]
PASSED_DAYS = ["2025-01-01", "2025-01-02", "2025-01-04", "2025-01-05", "2025-01-10"]
OUTAGE_DAY = "2025-01-03"
NEVER_REQUESTED = ["2025-01-06", "2025-01-07", "2025-01-08", "2025-01-09"]
# No GPU, no network beyond the page's own origin, no first-run or update traffic.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
UI_TIMEOUT_MS = 30_000
# The colour of a partition's dot in the check's Partitions tab (Dagster's design tokens).
GREEN, RED, GRAY = "var(--color-accent-green)", "var(--color-accent-red)", "var(--color-accent-gray)"

CHECK_STATUSES = """
query($key: AssetKeyInput!, $name: String!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetCheckOrError(checkName: $name) { ... on AssetCheck {
    partitionStatuses { ... on AssetCheckMultiPartitionStatuses { ranges { primaryDimStartKey primaryDimEndKey
      secondaryDim { ... on AssetCheckDefaultPartitionStatuses {
        succeededPartitions failedPartitions inProgressPartitions skippedPartitions executionFailedPartitions } } } } } } } } } }"""


@dataclass
class UI:
    base: str
    tmp: Path
    store: KlineStore


@pytest.fixture(scope="module")
def ui(tmp_path_factory, admin_url, dagster_storage_template) -> Iterator[UI]:
    """`dagster dev` on a fresh local instance after two UI-style backfills (see the module docstring)."""
    tmp = tmp_path_factory.mktemp("ui")
    with throwaway_database(admin_url, "kline_test_ui") as candles, \
            throwaway_database(admin_url, "dagster_test_ui", template=dagster_storage_template) as storage, \
            simulator_process(tmp / "simulator.log", "--outage", "BTCUSDT:2025-01-03T06:00Z/2025-01-03T07:00Z") as sim, \
            pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(tmp / "dagster_home"))
        env.setenv("KLINE_DATABASE_URL", candles)
        env.setenv("DAGSTER_PG_URL", storage)
        env.setenv("BYBIT_BASE_URL", sim)
        dagster_home()  # writes kline_pipeline/instance/local.yaml there
        with dagster_dev(tmp / "dagster_dev.log") as (base, _):
            add_symbol(base, "BTCUSDT")
            backfills = [launch_backfill(base, ASSETS, "2025-01-01|BTCUSDT", "2025-01-05|BTCUSDT"),
                         launch_backfill(base, ASSETS, "2025-01-10|BTCUSDT", "2025-01-10|BTCUSDT")]
            assert [wait_for_backfill(base, b) for b in backfills] == ["COMPLETED_SUCCESS"] * 2
            store = KlineStore(database_url=candles)
            yield UI(base, tmp, store)
            store.engine().dispose()


def check_statuses(base: str, asset: str, check: str) -> dict[str, str]:
    """`partitionStatuses` of a check, flattened: partition key -> succeeded / failed / ... ."""
    data = graphql(base, CHECK_STATUSES, {"key": {"path": [asset]}, "name": check})
    statuses = data["assetNodeOrError"]["assetCheckOrError"]["partitionStatuses"]
    flat: dict[str, str] = {}
    for span in statuses["ranges"]:
        first = datetime.fromisoformat(span["primaryDimStartKey"]).date()
        last = datetime.fromisoformat(span["primaryDimEndKey"]).date()
        days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        for field, symbols in span["secondaryDim"].items():
            for symbol in symbols:
                for day in days:
                    flat[f"{day}|{symbol}"] = field.removesuffix("Partitions")
    return flat


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh page (its own context) per test."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)  # the first page load compiles the UI's queries
    # A first visit shows a one-off "Join the Dagster community" dialog over the page, whenever
    # the UI gets to it: skip it whenever it is in the way of an action.
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
    yield page
    context.close()


def open_page(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")


def save(page, ui: UI, name: str) -> Path:
    path = ui.tmp / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000  # a real rendering, not a blank page
    if os.environ.get("KLINE_SAVE_SCREENSHOT") == "1":
        shutil.copyfile(path, ROOT / "docs" / name)
    return path


def test_each_day_shows_its_own_figures_on_the_asset_page(ui, page):
    expect = sync_api.expect
    open_page(page, f"{ui.base}/assets/price_klines_5m?view=partitions&partition=2025-01-03%7CBTCUSDT")
    expect(page.get_by_text("Materialized (6)")).to_be_visible()
    expect(page.get_by_text("Failed (0)")).to_be_visible()
    metadata = page.locator("tr")
    # The outage day's own rows (288 - 12), beside the totals of the range run it was part of.
    expect(metadata.filter(has=page.get_by_text("rows", exact=True))).to_contain_text("276")
    expect(metadata.filter(has=page.get_by_text("run_rows", exact=True))).to_contain_text(str(4 * 288 + 276))
    expect(metadata.filter(has=page.get_by_text("first_candle", exact=True))).to_contain_text(
        "2025-01-03T00:00:00+00:00")
    save(page, ui, "ui-screenshot.png")


@pytest.mark.parametrize(("asset", "check", "failed_days"), [
    ("price_klines_5m", "no_missing_candles", [OUTAGE_DAY]),  # the outage: failed (with WARN)
    ("price_klines_5m", "valid_ohlcv", []),
    ("price_klines_1h", "exact_and_complete", []),  # the outage's missing hour is explained
    ("price_klines_1d", "exact_and_complete", []),
])
def test_the_checks_partitions_tab_counts_and_colours_every_day(ui, page, asset, check, failed_days):
    expect = sync_api.expect
    passed = [d for d in [*PASSED_DAYS, OUTAGE_DAY] if d not in failed_days]
    open_page(page, f"{ui.base}/assets/{asset}?view=checks&checkDetail={check}")
    tabs = page.get_by_role("tab", name="Partitions", exact=True)
    expect(tabs).to_have_count(2)  # the asset's tab, then (once the check's panel is shown) the check's
    tabs.last.click()
    expect(page.get_by_text(f"Passed ({len(passed)})", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Failed ({len(failed_days)})", exact=True)).to_be_visible()
    expect(page.get_by_text("Skipped (0)", exact=True)).to_be_visible()
    expect(page.get_by_text("Execution Failed (0)", exact=True)).to_be_visible()
    page.get_by_placeholder("Filter by date…").fill("2025-01-")
    for days, colour in ((passed, GREEN), (failed_days, RED), (NEVER_REQUESTED, GRAY)):
        for day in days:
            row = page.locator("div").filter(has=page.get_by_text(day, exact=True)).filter(
                has=page.locator("div[style*='border-radius: 100%']")).last
            expect(row.locator("div[style*='border-radius: 100%']")).to_have_attribute(
                "style", f"width: 10px; height: 10px; border-radius: 100%; flex-shrink: 0; background-color: {colour};")
    if check == "no_missing_candles":
        page.get_by_placeholder("Filter by date…").fill("2025-01-0")  # the first nine days, in view
        expect(page.get_by_text("2025-01-10", exact=True)).to_have_count(0)
        save(page, ui, "ui-check-partitions.png")
    statuses = check_statuses(ui.base, asset, check)
    assert statuses == {f"{d}|BTCUSDT": "succeeded" for d in passed} | {f"{d}|BTCUSDT": "failed" for d in failed_days}


def test_the_checks_list_shows_the_latest_evaluation(ui, page):
    expect = sync_api.expect
    open_page(page, f"{ui.base}/assets/price_klines_5m?view=checks&checkDetail=valid_ohlcv")
    expect(page.get_by_text("Latest execution")).to_be_visible()
    entry = page.locator("a, div").filter(has=page.get_by_text("valid_ohlcv", exact=True)).filter(
        has_text="Succeeded").filter(has_not_text="no_missing_candles")
    expect(entry.last).to_be_visible()
    expect(page.get_by_text("Not evaluated")).to_have_count(0)
    save(page, ui, "ui-checks.png")


def test_partition_statuses_follow_the_watchdog_a_live_run_and_a_raw_rematerialization(ui):
    """After the backfills: BTCUSDT is not refreshed live (the schedule is stopped), so the
    freshness watchdog fails today's candles_fresh without any run; a live run then refreshes
    and records its days; re-materializing one raw day alone makes the rollup sensor refresh
    exactly that day's rollups."""
    today = datetime.now(timezone.utc).date().isoformat()
    wait_until(lambda: check_statuses(ui.base, "price_klines_5m", "candles_fresh").get(f"{today}|BTCUSDT") == "failed",
               150, "the freshness watchdog to fail today's candles_fresh")

    run_id, status = run_job(ui.base, "live_refresh_job")
    assert status == "SUCCESS"
    with dg.DagsterInstance.get() as instance:
        live_days = sorted({r.partition_key.split("|")[0] for r in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records if r.asset_key.path == ["price_klines_5m"]})
    assert len(live_days) == 3 and live_days[-1] == datetime.now(timezone.utc).date().isoformat()  # two days back
    fresh = check_statuses(ui.base, "price_klines_5m", "candles_fresh")
    assert fresh[f"{live_days[-1]}|BTCUSDT"] == "succeeded"
    # The first live day was fetched from the tick's window on, so its morning is missing (unless the
    # tick ran just after midnight): that day fails no_missing_candles and every rollup's check.
    expected = {}
    for day in live_days:
        start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
        holes = gap_report(ui.store, symbol="BTCUSDT", start=start, end=start + timedelta(days=1),
                           now=datetime.now(timezone.utc)).missing
        expected[f"{day}|BTCUSDT"] = "failed" if holes else "succeeded"
    assert list(expected.values())[1:] == ["succeeded", "succeeded"]
    earlier = {f"{d}|BTCUSDT": "succeeded" for d in PASSED_DAYS}
    assert check_statuses(ui.base, "price_klines_5m", "no_missing_candles") == {
        **earlier, f"{OUTAGE_DAY}|BTCUSDT": "failed", **expected}
    for table in ("price_klines_15m", "price_klines_1d"):
        assert check_statuses(ui.base, table, "exact_and_complete") == {
            **earlier, f"{OUTAGE_DAY}|BTCUSDT": "succeeded", **expected}

    # The raw asset alone for one day: the rollup sensor refreshes that day's rollups, nothing else.
    with dg.DagsterInstance.get() as instance:
        before = instance.fetch_materializations(dg.AssetKey("price_klines_4h"), limit=1).records[0].storage_id
    assert wait_for_backfill(ui.base, launch_backfill(ui.base, ["price_klines_5m"], "2025-01-02|BTCUSDT",
                                                      "2025-01-02|BTCUSDT")) == "COMPLETED_SUCCESS"

    def refreshed() -> set[str]:
        with dg.DagsterInstance.get() as instance:
            records = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("price_klines_4h"), after_storage_id=before), limit=10).records
            return {r.partition_key for r in records}

    assert wait_until(refreshed, 180, "the rollup sensor to refresh 2025-01-02") == {"2025-01-02|BTCUSDT"}
