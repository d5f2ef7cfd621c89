"""The Dagster UI in a real browser: what a user sees after backfilling one partition.

One partition of every asset is materialised into a fresh local instance (the packaged local
template, SQLite) from the bundled simulator into a throwaway candle database; then
`dagster dev` serves that instance and headless Chromium, driven by Playwright, opens the
asset page of price_klines_5m. Skipped only where Chromium or Playwright is not installed
(`.ci/run` installs both; Playwright never downloads a browser here).

Save the screenshot for the docs with: KLINE_SAVE_SCREENSHOT=1 python -m pytest kline_pipeline_tests/test_ui_browser.py
"""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from kline_pipeline.cli import _default_dagster_home
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline_tests.conftest import _admin_url, throwaway_database
from kline_pipeline_tests.processes import ROOT, dagster_dev, simulator_process

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

PARTITION = "2025-01-01|BTCUSDT"
NO_MISSING_CANDLES = dg.AssetCheckKey(dg.AssetKey("price_klines_5m"), "no_missing_candles")
# No GPU, no network beyond the page's own origin, no first-run or update traffic.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
UI_TIMEOUT_MS = 30_000
CHECK_STATUS = re.compile(r"Succeeded|Failed|Warning|Skipped|Not evaluated|In progress|Execution failed")
"""The status words the checks list shows next to a check's name."""


@pytest.fixture
def candle_database(tmp_path_factory) -> Iterator[str]:
    """A throwaway candle database for this test alone, dropped afterwards."""
    with throwaway_database(_admin_url(tmp_path_factory.mktemp("pg")), "kline_test_ui") as url:
        yield url


@pytest.fixture
def simulator_url(tmp_path) -> Iterator[str]:
    """The bundled exchange simulator as its own process, as a user would run it."""
    with simulator_process(tmp_path / "simulator.log") as url:
        yield url


@pytest.fixture
def dagster_home(tmp_path, monkeypatch, candle_database, simulator_url) -> Path:
    """A local instance (the packaged template) holding one materialised partition of every asset.

    The definitions' own resources read KLINE_DATABASE_URL and BYBIT_BASE_URL at run time, so
    the run uses exactly the configuration `dagster dev` will see below.
    """
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("KLINE_DATABASE_URL", candle_database)
    monkeypatch.setenv("BYBIT_BASE_URL", simulator_url)
    home = _default_dagster_home()  # writes kline_pipeline/instance/local.yaml there
    from kline_pipeline.definitions import defs

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT"])
        # Raw asset, rollups and any checks in one run: the rollup sensor has nothing left to do.
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key=PARTITION
        )
        assert result.success
    return home


@pytest.fixture
def dagster_ui(tmp_path, dagster_home) -> Iterator[str]:
    """`dagster dev` on a free local port, serving `dagster_home`; yields its base URL."""
    with dagster_dev(tmp_path / "dagster_dev.log") as (base, _):
        yield base


def open_tab(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    # A first visit shows a one-off "Join the Dagster community" dialog over the page.
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=3_000)
        skip.click()
    except sync_api.TimeoutError:
        pass


def test_asset_page_shows_partitions_metadata_and_checks(dagster_ui, tmp_path):
    from kline_pipeline.definitions import defs

    # Asset checks may not exist yet: assert on them only where the definitions have them.
    check_keys = defs.resolve_asset_graph().asset_check_keys
    other_checks = (
        [k.name for k in check_keys if k.asset_key == NO_MISSING_CANDLES.asset_key and k != NO_MISSING_CANDLES]
        if NO_MISSING_CANDLES in check_keys else None
    )
    asset_url = f"{dagster_ui}/assets/price_klines_5m"
    expect = sync_api.expect
    expect.set_options(timeout=UI_TIMEOUT_MS)  # the first page load compiles the UI's queries
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)

            # Overview: the latest materialisation of our partition and its metadata.
            open_tab(page, asset_url)
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            expect(page.get_by_text(PARTITION).first).to_be_visible()
            rows_entry = page.locator("tr").filter(has=page.get_by_text("rows", exact=True))
            expect(rows_entry).to_contain_text("288")
            expect(page.locator("tr").filter(has=page.get_by_text("first_candle", exact=True))).to_contain_text(
                "2025-01-01T00:00:00+00:00"
            )
            overview = tmp_path / "ui-overview.png"
            page.screenshot(path=str(overview))

            # Partitions: exactly one materialised, the symbol listed in its dimension.
            open_tab(page, f"{asset_url}?view=partitions")
            expect(page.get_by_text("Materialized (1)")).to_be_visible()
            expect(page.get_by_text("Failed (0)")).to_be_visible()
            expect(page.get_by_text("BTCUSDT", exact=True).first).to_be_visible()
            page.screenshot(path=str(tmp_path / "ui-partitions.png"))

            if other_checks is not None:
                # The list entry of the check: the innermost element naming it and no other check.
                open_tab(page, f"{asset_url}?view=checks")
                entry = page.locator("div").filter(has=page.get_by_text(NO_MISSING_CANDLES.name, exact=True))
                for name in other_checks:
                    entry = entry.filter(has_not_text=name)
                entry = entry.filter(has_text=CHECK_STATUS)
                expect(entry.last).to_contain_text("Succeeded")
                page.screenshot(path=str(tmp_path / "ui-checks.png"))
        finally:
            browser.close()

    assert overview.stat().st_size > 10_000  # a real rendering, not a blank page
    if os.environ.get("KLINE_SAVE_SCREENSHOT") == "1":
        shutil.copyfile(overview, ROOT / "docs" / "ui-screenshot.png")
