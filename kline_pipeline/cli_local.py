"""`kline-pipeline dev`, `doctor` and `db`: run, inspect and open the local set-up."""

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kline_pipeline.cli_support import fail, port_number
from kline_pipeline.home import PROJECT_ROOT
from kline_pipeline.instance.setup import dagster_home, local_instance

if TYPE_CHECKING:  # imported where used: argument parsing stays quick
    import subprocess


def cmd_dev(args: argparse.Namespace) -> int:
    """Refuse (exit 1, naming it) if a dev already runs on this DAGSTER_HOME or a port is taken:
    a second one would run a second daemon on the same instance. Else run until interrupted."""
    from datetime import datetime, timezone

    from kline_pipeline.home import DevAlreadyRunning, dev_lock, port_in_use, ui_url_of

    home = dagster_home()
    ui_url = ui_url_of(args.host, args.port)
    api_url = None if args.no_api else f"{ui_url_of(args.host, args.api_port)}/api/backfill"
    info = {"pid": os.getpid(), "ui_url": ui_url, "api_url": api_url,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        with dev_lock(home, info):
            ports = {"--port": args.port, **({} if args.no_api else {"--api-port": args.api_port})}
            busy = [f"{option} {port}" for option, port in ports.items() if port_in_use(args.host, port)]
            if busy:
                print(f"error: already in use on {args.host}: {', '.join(busy)} (another kline-pipeline dev, "
                      "dagster dev or program); stop it or choose other ports; nothing was started", file=sys.stderr)
                return 1
            return _run_dev(args, home, ui_url=ui_url, api_url=api_url)
    except DevAlreadyRunning as exc:
        print(f"error: {exc}; nothing was started", file=sys.stderr)
        return 1


def _run_dev(args: argparse.Namespace, home: Path, *, ui_url: str, api_url: str | None) -> int:
    import signal
    import subprocess

    from kline_pipeline.home import ANNOUNCED_ENV
    from kline_pipeline.instance.env import DAGSTER_ENV
    from kline_pipeline.quiet import quiet_child_env

    # Create (or migrate) the instance's storage once, here: the API and dagster dev start
    # at the same moment, and two processes creating a fresh DAGSTER_HOME's tables at once race
    # in alembic ("more than one head"), which left a newcomer's first `dev` without a UI.
    local_instance().dispose()
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    # Handlers (not SIG_IGN) also mean the children start with default dispositions, even when
    # this command was started in the background of a script (where SIGINT is ignored).
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    api = dagster = None
    # The API's links point at this UI, whatever --port is (unless KLINE_UI_URL says otherwise).
    # Dagster's processes get the variables this project needs (kline_pipeline/instance/env.py:
    # cancel that stops, batched event writes); a user's own value wins.
    env = quiet_child_env({**DAGSTER_ENV, **os.environ, "KLINE_UI_URL": os.environ.get("KLINE_UI_URL") or ui_url,
                           ANNOUNCED_ENV: str(home)})  # the API child need not print DAGSTER_HOME again
    try:
        if not args.no_api:
            # The old API keeps its port (3000) for existing scripts. A child process, stopped
            # in `finally` however dagster dev ends.
            api = subprocess.Popen([sys.executable, "-m", "kline_pipeline.cli", "serve-api",
                                    "--host", args.host, "--port", str(args.api_port)], env=env)
        print(f"Dagster UI on {ui_url}; old API {api_url or 'off'}; `kline-pipeline doctor` checks it all", flush=True)
        workspace = PROJECT_ROOT / "workspace.yaml"
        cmd = ["dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
        # Started in DAGSTER_HOME: from the project root, dagster dev warned that the production
        # dagster.yaml there "will not be used" (true, and meant: local mode has its own).
        dagster = subprocess.Popen(cmd, cwd=home, env=env)
        return dagster.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        # Ctrl-C in a terminal reaches the children too: give them time to shut down by
        # themselves; a SIGTERM (or SIGINT) sent to this process alone is passed on at once.
        grace = 0.0 if not received or received[-1] == signal.SIGTERM else 30.0
        for child in (dagster, api):
            _stop_child(child, grace=grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_child(child: "subprocess.Popen[bytes] | None", *, grace: float) -> None:
    import subprocess

    if child is None or child.poll() is not None:
        return
    try:
        child.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    child.terminate()  # dagster dev treats SIGTERM like Ctrl-C; uvicorn shuts down cleanly
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def cmd_db(args: argparse.Namespace) -> int:
    from kline_pipeline.embedded import default_pgdata, stop_embedded
    from kline_pipeline.store import KlineStore, redact_url

    from kline_pipeline.dbshell import libpq_url, psql_invocation

    dagster_home()
    if args.action == "url":
        try:
            url = KlineStore().resolved_url()
        except ValueError as exc:  # KLINE_DATABASE_URL malformed: say why, never echo it
            return fail(f"KLINE_DATABASE_URL: {exc}")
        print(redact_url(libpq_url(url) if args.libpq else url))
    elif args.action == "psql":
        store = KlineStore()
        try:
            store.engine()  # starts the embedded server if needed and applies the schema: the SQL then works
        except ConnectionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        argv, env = psql_invocation(store.resolved_url(), args.psql_args)
        sys.stdout.flush()
        os.execve(argv[0], argv, env)  # psql takes over the terminal (Ctrl-C, exit status)
    else:
        stopped = stop_embedded()
        print(f"embedded PostgreSQL in {default_pgdata()}: {'stopped' if stopped else 'was not running'}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the health report (see kline_pipeline/health.py); exit 0 healthy, 1 problems, 2 cannot tell.

    Reads only. A DAGSTER_HOME without an instance is not created here: that is an answer too."""
    import json

    from kline_pipeline import clock
    from kline_pipeline.health import UNKNOWN, Finding, HealthReport, check_health
    from kline_pipeline.home import resolve_dagster_home
    from kline_pipeline.store import KlineStore

    now = clock.utcnow()
    home = resolve_dagster_home()
    if not (home.path / "dagster.yaml").exists():
        report = HealthReport(now, (Finding("dagster instance", "", UNKNOWN, f"no instance at DAGSTER_HOME={home.path} "
                                            f"({home.why}): nothing ran there yet; start `kline-pipeline dev`"),))
    else:
        try:
            instance = local_instance()
        except Exception as exc:  # e.g. the production dagster.yaml without DAGSTER_PG_URL
            reason = (str(exc).strip().splitlines() or [""])[0]
            report = HealthReport(now, (Finding("dagster instance", "", UNKNOWN, f"cannot open the instance at "
                                                f"{home.path}: {type(exc).__name__}: {reason}"),))
        else:
            with instance:
                report = check_health(instance, KlineStore(), now=now)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text())
    return report.exit_code


def add_local_commands(sub: "argparse._SubParsersAction") -> None:
    """The parsers of dev, doctor and db (their --help texts)."""
    dev = sub.add_parser(
        "dev", help="run the Dagster UI, the daemon and the old API locally",
        description="Start `dagster dev` on this project (the UI on --port, default 3001, and the "
        "daemon that executes backfills) plus the old HTTP API (`serve-api`) on --api-port, "
        "default 3000, where scripts of the old system expect it. DAGSTER_HOME: the env var if set, else "
        "this checkout's .dagster_home (an installed package: ~/.kline_pipeline/dagster_home), whatever "
        "the current directory; the local instance template is written there on first use. The candle "
        "store is the embedded PostgreSQL unless KLINE_DATABASE_URL is set. The daemon gets "
        "DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE=1 (unless set), so a canceled backfill stops queueing "
        "runs at once. Refuses (exit 1) while another dev runs on the same DAGSTER_HOME or a port is "
        "taken. Ctrl-C stops all of it.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument("--port", type=port_number, default=3001, help="port of the Dagster UI (default 3001)")
    dev.add_argument("--api-port", type=port_number, default=3000, help="port of the old API (default 3000)")
    dev.add_argument("--no-api", action="store_true", help="do not start the old API")
    dev.set_defaults(func=cmd_dev)

    doctor = sub.add_parser(
        "doctor", help="answer \"is it working?\": database, daemon, automation, candles, runs, pools",
        description="Check at once: the candle database is reachable; the Dagster instance (DAGSTER_HOME); "
        "the daemon's heartbeats (scheduler, sensors, backfills, run queue, monitoring); that "
        "rollup_refresh_sensor and live_refresh run and how their last tick ended; per symbol the "
        "newest candle's age (limit 15 minutes) and missing candles since its first stored one; runs "
        "of the last hour (queued, in progress, failed); pool limits and slots. Reads only. The same "
        "report is GET /api/health on the old API. Exit status: 0 healthy, 1 problems found, 2 cannot "
        "tell (no instance, or nothing to check yet).",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    doctor.set_defaults(func=cmd_doctor)

    db = sub.add_parser(
        "db", help="the candle database: its URL, a psql session, or stop the embedded server",
        description="The candle database is KLINE_DATABASE_URL, else the embedded PostgreSQL under "
        "DAGSTER_HOME (started on first use). `db psql` opens it in psql, e.g. "
        "`kline-pipeline db psql -c \"SELECT * FROM timescaledb_information.jobs\"`.",
    )
    db_actions = db.add_subparsers(dest="action", required=True)
    url = db_actions.add_parser("url", help="print its URL (password hidden)")
    url.add_argument("--libpq", action="store_true",
                     help="print it as psql and pg_dump accept it (postgresql://, no password)")
    psql = db_actions.add_parser("psql", help="open it in psql; further arguments go to psql (e.g. -c \"SQL\")")
    psql.add_argument("psql_args", nargs="*", metavar="PSQL_ARG", help="passed to psql as they are")
    db_actions.add_parser("stop", help="stop the embedded server (it keeps running between commands)")
    db.set_defaults(func=cmd_db)
