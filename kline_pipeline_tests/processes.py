"""Helpers for tests that run the product as separate processes (simulator, `dagster dev`)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
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


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll `url` until it answers 200, failing early (with the log) if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[:4]} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
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


@contextmanager
def simulator_process(log: Path, *args: str) -> Iterator[str]:
    """The bundled exchange simulator as its own process, as a user would run it; yields its URL."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kline_pipeline.cli", "simulate-exchange", "--host", "127.0.0.1",
             "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/v5/market/time", proc, log, timeout=20)
        yield url
    finally:
        stop_group(proc)


@contextmanager
def dagster_dev(log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`dagster dev` on a free local port with the current environment; yields (base URL, process).

    The live_refresh schedule is stopped first (in the instance of DAGSTER_HOME): it ticks on the
    wall clock every 5 minutes and would fetch every candle since the test's last stored one into
    the database the test is checking, whenever a test happens to span a tick.
    """
    subprocess.run([sys.executable, "-m", "dagster", "schedule", "stop", "live_refresh", "-w",
                    str(ROOT / "workspace.yaml")], cwd=ROOT, env=dict(os.environ), check=True,
                   capture_output=True, timeout=120)
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
             "-p", str(port)],
            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/server_info", proc, log, timeout=90)
        yield base, proc
    finally:
        stop_group(proc)


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
