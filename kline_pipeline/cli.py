"""`kline-pipeline`: run the project locally, manage symbols, serve the offline exchange."""

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_dagster_home() -> Path:
    """DAGSTER_HOME if set, else `.dagster_home/` in the current directory (created on use).

    The packaged LOCAL instance template (kline_pipeline/instance/local.yaml: SQLite storage,
    the same run queue and pool limits as production) is written there if the directory has no
    dagster.yaml, so every command (not only `dev`) sees the same instance configuration. The
    top-level dagster.yaml is the production config (PostgreSQL from env vars) and is never
    copied implicitly: it would fail without DAGSTER_PG_URL. Read through importlib.resources so
    an installed wheel finds the template as well as an editable checkout.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists():
        template = resources.files("kline_pipeline.instance").joinpath("local.yaml")
        config.write_text(template.read_text(encoding="utf-8"), encoding="utf-8")
        print(f"wrote {config} from the local instance template (kline_pipeline/instance/local.yaml)", file=sys.stderr)
    return home


def _instance():
    import dagster as dg

    _default_dagster_home()
    return dg.DagsterInstance.get()


def cmd_dev(args: argparse.Namespace) -> int:
    home = _default_dagster_home()
    print(f"DAGSTER_HOME={home}; Dagster UI on http://{args.host}:{args.port}")
    workspace = PROJECT_ROOT / "workspace.yaml"
    cmd = ["dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    os.chdir(PROJECT_ROOT)
    os.execvp(cmd[0], cmd)
    return 0  # not reached


def cmd_symbols(args: argparse.Namespace) -> int:
    from kline_pipeline.bybit import BybitClient, BybitError
    from kline_pipeline.symbols import add_symbols, list_symbols

    instance = _instance()
    if args.action == "list":
        for symbol in list_symbols(instance):
            print(symbol)
        return 0
    try:
        added = add_symbols(instance, BybitClient(), args.symbols)
    except (ValueError, BybitError) as exc:
        print(f"error: {exc}; nothing was added", file=sys.stderr)
        return 2
    known = sorted(set(args.symbols) - set(added))
    print(f"added: {', '.join(added) or 'none'}" + (f"; already present: {', '.join(known)}" if known else ""))
    return 0


def cmd_gaps(args: argparse.Namespace) -> int:
    import json

    from kline_pipeline import clock
    from kline_pipeline.gaps import CAUSES, gap_report
    from kline_pipeline.models import parse_utc_time
    from kline_pipeline.store import KlineStore

    _default_dagster_home()  # the embedded database lives under it
    try:
        start = parse_utc_time(args.start, name="--start")
        end = parse_utc_time(args.end, name="--end")
        report = gap_report(KlineStore(), symbol=args.symbol, start=start, end=end, now=clock.utcnow())
    except (ValueError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"{report.symbol} {report.start:%Y-%m-%d %H:%M} .. {report.end:%Y-%m-%d %H:%M} UTC: "
              f"{report.present} of {report.expected} expected candles stored")
        for span in report.spans:
            print(f"  {span.start:%Y-%m-%d %H:%M} .. {span.end:%Y-%m-%d %H:%M}  {span.candles:>6} candles  {span.cause}")
        print("totals: " + ", ".join(f"{cause} {report.totals[cause]}" for cause in CAUSES))
    return 1 if report.missing else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from kline_pipeline.simulator import parse_instrument_spec, parse_outage_spec, run_simulator

    try:
        instruments = dict(parse_instrument_spec(s) for s in args.instrument) if args.instrument else None
        outages = [parse_outage_spec(s) for s in args.outage]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kinds = [k for k in args.fail_kinds.split(",") if k] if args.fail_kinds else []
    run_simulator(
        host=args.host, port=args.port, instruments=instruments, outages=outages,
        fail_every=args.fail_every, fail_kinds=kinds,
    )
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from kline_pipeline.embedded import default_pgdata, stop_embedded
    from kline_pipeline.store import KlineStore, redact_url

    _default_dagster_home()
    if args.action == "url":
        print(redact_url(KlineStore().resolved_url()))
    else:
        stopped = stop_embedded()
        print(f"embedded PostgreSQL in {default_pgdata()}: {'stopped' if stopped else 'was not running'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kline-pipeline",
        description="Exact Bybit 5-minute candles in PostgreSQL, orchestrated by Dagster.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser(
        "dev", help="run the Dagster UI and daemon locally (dagster dev)",
        description="Start `dagster dev` on this project. DAGSTER_HOME defaults to ./.dagster_home "
        "(the project's dagster.yaml is copied there on first use); the candle store is the "
        "embedded PostgreSQL unless KLINE_DATABASE_URL is set.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=3000, help="port of the UI (default 3000)")
    dev.set_defaults(func=cmd_dev)

    symbols = sub.add_parser(
        "symbols", help="add or list symbol partitions",
        description="Symbols are the second partition dimension. `add` checks each symbol against "
        "Bybit's instruments-info (BYBIT_BASE_URL / BYBIT_CATEGORY) before adding any of them.",
    )
    actions = symbols.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add symbols, e.g. `kline-pipeline symbols add BTCUSDT ETHUSDT`")
    add.add_argument("symbols", nargs="+", metavar="SYMBOL", help="Bybit symbol, uppercase, e.g. BTCUSDT")
    actions.add_parser("list", help="print the symbols that have partitions")
    symbols.set_defaults(func=cmd_symbols)

    gaps = sub.add_parser(
        "gaps", help="report absent candles of a symbol over a time range",
        description="List the spans of absent 5-minute candles between --start and --end, each "
        "classified as missing (never fetched or lost), exchange_outage (the exchange had none), "
        "not_listed (before the listing) or not_yet_closed. Exit status: 0 when nothing is "
        "missing, 1 when candles are missing, 2 on bad arguments.",
    )
    gaps.add_argument("--symbol", required=True, help="Bybit symbol, e.g. BTCUSDT")
    gaps.add_argument("--start", required=True, help="ISO 8601 UTC time, e.g. 2025-01-01T00:00:00Z")
    gaps.add_argument("--end", required=True, help="ISO 8601 UTC time (exclusive), e.g. 2025-02-01T00:00:00Z")
    gaps.add_argument("--json", action="store_true", help="print the report as JSON")
    gaps.set_defaults(func=cmd_gaps)

    sim = sub.add_parser(
        "simulate-exchange", help="serve an offline Bybit-compatible API for tests and demos",
        description="Serve /v5/market/kline, /instruments-info and /time with Bybit's rules and "
        "deterministic candles. Point the pipeline at it with BYBIT_BASE_URL=http://HOST:PORT.",
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    sim.add_argument("--instrument", action="append", default=[], metavar="SYMBOL:LISTED",
                     help="list a symbol from a UTC date/time, e.g. NEWUSDT:2025-01-15 (repeatable; "
                     "default BTCUSDT, ETHUSDT, SOLUSDT)")
    sim.add_argument("--outage", action="append", default=[], metavar="SYMBOL:START/END",
                     help="a span without candles, e.g. BTCUSDT:2025-01-10T00:00Z/2025-01-10T06:00Z (repeatable)")
    sim.add_argument("--fail-every", type=int, default=None, metavar="N", help="fail every Nth request")
    sim.add_argument("--fail-kinds", default="", metavar="K1,K2",
                     help="faults to cycle through: 10006,10000,10016,429,502,403,badjson,truncated,slow:SECONDS")
    sim.set_defaults(func=cmd_simulate)

    db = sub.add_parser("db", help="the candle database: show its URL or stop the embedded server")
    db.add_argument("action", choices=["url", "stop"], help="url: print it (password hidden); stop: stop the embedded server")
    db.set_defaults(func=cmd_db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
