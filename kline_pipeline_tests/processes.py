"""Helpers for tests that run the product as separate processes (simulator, `dagster dev`)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, ok: tuple[int, ...] = ()) -> None:
    """Poll `url` until it answers 200 (or a status in `ok`), failing early (with the log) if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[:4]} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
            time.sleep(0.25)
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True and everything it spawned.

    `dagster dev` runs the webserver, the daemon and code servers as children; Ctrl-C (SIGINT)
    is its normal way out. Whatever is still alive after a grace period is killed.
    """
    for sig, grace in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGINT:
            # The parent is gone; make sure no child outlived it.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return


def _stop_live_refresh() -> None:
    """Stop the live_refresh schedule in the instance of DAGSTER_HOME: it ticks on the wall clock
    every 5 minutes and would fetch every candle since the test's last stored one into the
    database the test is checking, whenever a test happens to span a tick."""
    subprocess.run([sys.executable, "-m", "dagster", "schedule", "stop", "live_refresh", "-w",
                    str(ROOT / "workspace.yaml")], cwd=ROOT, env=dict(os.environ), check=True,
                   capture_output=True, timeout=120)


@contextmanager
def _serving(cmd: list[str], log: Path, ready_url: str, timeout: float = 90) -> Iterator[subprocess.Popen]:
    """Run `cmd` in its own process group until `ready_url` answers; stop the group afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for_http(ready_url, proc, log, timeout=timeout)
        yield proc
    finally:
        stop_group(proc)


@contextmanager
def simulator_process(log: Path, *args: str) -> Iterator[str]:
    """The bundled exchange simulator as its own process, as a user would run it; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "kline_pipeline.cli", "simulate-exchange", "--host", "127.0.0.1", "--port", str(port), *args]
    with _serving(cmd, log, f"{url}/v5/market/time", timeout=20):
        yield url


@contextmanager
def dagster_dev(log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`dagster dev` on a free local port with the current environment; yields (base URL, process).

    The live_refresh schedule is stopped first (see `_stop_live_refresh`).
    """
    _stop_live_refresh()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    with _serving(cmd, log, f"{base}/server_info") as proc:
        yield base, proc


@contextmanager
def kline_dev(log: Path) -> Iterator[tuple[str, str, subprocess.Popen]]:
    """`kline-pipeline dev` (UI, daemon and the old API, as a user starts them) on free ports;
    yields (UI base URL, API base URL, process). The live_refresh schedule is stopped first."""
    _stop_live_refresh()
    ui_port, api_port = free_port(), free_port()
    ui, api = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{api_port}"
    cmd = [sys.executable, "-m", "kline_pipeline.cli", "dev", "--port", str(ui_port), "--api-port", str(api_port)]
    with _serving(cmd, log, f"{ui}/server_info") as proc:
        wait_for_http(f"{api}/api/backfill?type=gaps", proc, log, timeout=60, ok=(400,))
        yield ui, api, proc


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    """POST a GraphQL query to the Dagster webserver, returning `data` (errors fail the test)."""
    request = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    if body.get("errors"):
        pytest.fail(f"GraphQL errors: {body['errors']}")
    return body["data"]


# What the UI sends: the same GraphQL mutations and queries, for tests that act as a user would.
LAUNCH_BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status runs(limit: 50) { runId status } } } }"""
ADD_SYMBOL = """mutation($loc: String!, $key: String!) { addDynamicPartition(repositorySelector:
  {repositoryLocationName: $loc, repositoryName: "__repository__"}, partitionsDefName: "symbols",
  partitionKey: $key) { __typename } }"""
LAUNCH_RUN = """mutation($loc: String!, $job: String!) { launchRun(executionParams: {selector:
  {repositoryLocationName: $loc, repositoryName: "__repository__", jobName: $job}, runConfigData: {}}) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN_STATUS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
LOCATION = "kline_pipeline"


def wait_until(predicate, timeout: float, what: str):
    """Poll `predicate` until it returns something truthy (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def add_symbol(base: str, symbol: str) -> None:
    assert graphql(base, ADD_SYMBOL, {"loc": LOCATION, "key": symbol})["addDynamicPartition"]["__typename"] in (
        "AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError")


def launch_backfill(base: str, assets: list[str], first: str, last: str) -> str:
    """A partition backfill of `assets` over [first, last] (keys like 2025-01-01|BTCUSDT), as the UI launches it."""
    data = graphql(base, LAUNCH_BACKFILL, {"p": {"partitionsByAssets": [
        {"assetKey": {"path": [asset]}, "partitions": {"ranges": [{"start": first, "end": last}]}} for asset in assets]}})
    assert data["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", data
    return data["launchPartitionBackfill"]["backfillId"]


def backfill_status(base: str, backfill_id: str) -> dict:
    return graphql(base, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]


def wait_for_backfill(base: str, backfill_id: str, timeout: float = 300) -> str:
    """Wait until the backfill has ended; its final status."""
    done = ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "COMPLETED")
    return wait_until(lambda: (s := backfill_status(base, backfill_id)["status"]) in done and s, timeout,
                      f"backfill {backfill_id} to end")


def run_job(base: str, job: str, timeout: float = 300) -> tuple[str, str]:
    """Launch a run of `job` like the UI's Launch button and wait for it to end: (run id, status)."""
    data = graphql(base, LAUNCH_RUN, {"loc": LOCATION, "job": job})["launchRun"]
    assert data["__typename"] == "LaunchRunSuccess", data
    run_id = data["run"]["runId"]
    ended = ("SUCCESS", "FAILURE", "CANCELED")
    status = wait_until(lambda: (s := graphql(base, RUN_STATUS, {"id": run_id})["runOrError"]["status"]) in ended and s,
                        timeout, f"run {run_id} of {job} to end")
    return run_id, status
