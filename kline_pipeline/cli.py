"""`kline-pipeline`: run the project locally, manage symbols, serve the offline exchange."""

import argparse
import math
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence

from kline_pipeline.cli_support import fail, offline_hint, port_number
from kline_pipeline.instance.setup import dagster_home, local_instance


def cmd_symbols(args: argparse.Namespace) -> int:
    from kline_pipeline.bybit import BybitClient, BybitError
    from kline_pipeline.symbols import add_symbols, invalid_symbols, list_symbols, remove_symbol

    instance = local_instance()
    if args.action == "list":
        for symbol in list_symbols(instance):
            print(symbol)
        for symbol in invalid_symbols(instance):  # stdout stays one symbol per line for scripts
            print(f"warning: {symbol!r} is not a valid symbol (added outside kline-pipeline, e.g. in the UI); "
                  f"remove it with: kline-pipeline symbols remove {shlex.quote(symbol)}", file=sys.stderr)
        return 0
    if args.action == "remove":
        try:
            removal = remove_symbol(instance, args.symbol, purge=args.purge)
        except (ValueError, ConnectionError) as exc:
            return fail(str(exc))
        done = "removed the symbol partition" if removal.partition_removed else "no symbol partition to remove"
        if not args.purge:
            print(f"{args.symbol}: {done}; its stored candles and rollups are kept (--purge deletes them)")
        else:
            deleted = ", ".join(f"{table} {count}" for table, count in removal.rows_deleted.items())
            print(f"{args.symbol}: {done}; rows deleted: {deleted}")
        return 0
    try:
        added = add_symbols(instance, BybitClient(), args.symbols)
    except (ValueError, BybitError) as exc:
        return fail(f"{exc}; nothing was added{offline_hint(exc)}")
    known = sorted(set(args.symbols) - set(added))
    print(f"added: {', '.join(added) or 'none'}" + (f"; already present: {', '.join(known)}" if known else ""))
    return 0


def cmd_gaps(args: argparse.Namespace) -> int:
    import json

    from kline_pipeline import clock
    from kline_pipeline.backfill_requests import RequestError, max_days_from_env, validate_request
    from kline_pipeline.gaps import CAUSES, gap_report
    from kline_pipeline.repair import gaps_json
    from kline_pipeline.store import KlineStore

    dagster_home()  # the embedded database lives under it
    # Exit status 1 means "candles are missing": every bad input must be 2, never 1.
    try:
        symbol, start, end = validate_request(args.symbol, args.start, args.end, now=clock.utcnow(),
                                              max_days=max_days_from_env())
    except RequestError as exc:
        return fail(f"--{exc.field}: {str(exc).removeprefix(f'{exc.field}: ')}")
    except ValueError as exc:
        return fail(str(exc))
    try:
        store = KlineStore()
        report = gap_report(store, symbol=symbol, start=start, end=end, now=clock.utcnow())
        doc = gaps_json(store, report)  # with the outage repair history of its days
    except (ValueError, ConnectionError) as exc:  # KLINE_DATABASE_URL wrong or unreachable
        return fail(str(exc))
    if not report.present and not _is_added(args.symbol):
        # Reported as "all missing" before: true, but the cause is that nothing fetches it.
        print(f"error: {args.symbol} is not added, so nothing fetches or stores its candles: add it with "
              f"`kline-pipeline symbols add {args.symbol}` and backfill the range (`kline-pipeline symbols list` "
              "shows the added ones)", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"{report.symbol} {report.start:%Y-%m-%d %H:%M} .. {report.end:%Y-%m-%d %H:%M} UTC: "
              f"{report.present} of {report.expected} expected candles stored")
        for span in report.spans:
            print(f"  {span.start:%Y-%m-%d %H:%M} .. {span.end:%Y-%m-%d %H:%M}  {span.candles:>6} candles  {span.cause}")
        print("totals: " + ", ".join(f"{cause} {report.totals[cause]}" for cause in CAUSES))
        for attempt in doc["repairs"]:
            print(f"  outage repair {attempt['attempted_at'][:16].replace('T', ' ')} of {attempt['day']}: "
                  f"{attempt['recovered']} of {attempt['outage_before']} outage candles recovered, "
                  f"{attempt['still_out']} still out")
    return 1 if report.missing else 0


def _is_added(symbol: str) -> bool:
    from kline_pipeline.symbols import list_symbols

    return symbol in list_symbols(local_instance())


def cmd_serve_api(args: argparse.Namespace) -> int:
    from kline_pipeline.api import serve_api

    dagster_home()
    try:
        serve_api(host=args.host, port=args.port)
    except ValueError as exc:  # e.g. a bad KLINE_API_MAX_DAYS
        return fail(str(exc))
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from kline_pipeline.backfill_cli import cmd_backfill as run

    return run(args, local_instance())


def cmd_simulate(args: argparse.Namespace) -> int:
    from kline_pipeline.simulator import (
        DEFAULT_INSTRUMENTS,
        parse_delisting_spec,
        parse_instrument_spec,
        parse_outage_spec,
        run_simulator,
    )
    from kline_pipeline.simulator.faults import validate_fault
    from kline_pipeline.simulator.market import MarketModel

    kinds = [k for k in args.fail_kinds.split(",") if k] if args.fail_kinds else []
    try:
        instruments = dict(parse_instrument_spec(s) for s in args.instrument) if args.instrument else None
        outages = [parse_outage_spec(s) for s in args.outage]
        delistings = dict(parse_delisting_spec(s) for s in args.delist)
        for kind in kinds:
            validate_fault(kind)
        model = MarketModel(instruments or DEFAULT_INSTRUMENTS, delistings)  # names an unknown symbol
        for outage in outages:
            model.add_outage(outage.symbol, outage.start_ms, outage.end_ms)
    except ValueError as exc:
        return fail(str(exc))
    run_simulator(
        host=args.host, port=args.port, instruments=instruments, outages=outages,
        fail_every=args.fail_every, fail_kinds=kinds, delistings=delistings,
        clock_skew_ms=round(args.clock_skew * 1000),
    )
    return 0


def _seconds(text: str, *, within: Callable[[float], bool], allowed: str) -> float:
    """A finite number of seconds for which `within` holds; else a usage error naming `allowed`."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and within(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds {allowed}")
    return value


def _positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    return _seconds(text, within=lambda v: v > 0, allowed="above 0, e.g. 2")


def _finite_seconds(text: str) -> float:
    """argparse type: a finite number of seconds, of either sign, within a day (a clock skew)."""
    return _seconds(text, within=lambda v: abs(v) <= 86_400, allowed="between -86400 and 86400, e.g. -2")


def _at_least_one(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _add_range_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """--symbol, --start and --end, as the gaps and backfill commands (and the old API) take them."""
    parser.add_argument("--symbol", required=required,
                        help="Bybit symbol with its market, e.g. BTCUSDT (linear), spot:BTCUSDT, inverse:BTCUSD")
    parser.add_argument("--start", required=required, help="ISO 8601 UTC time, e.g. 2025-01-01T00:00:00Z")
    parser.add_argument("--end", required=required, help="ISO 8601 UTC time (exclusive), e.g. 2025-02-01T00:00:00Z")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kline-pipeline",
        description="Exact Bybit 5-minute candles in PostgreSQL, orchestrated by Dagster.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from kline_pipeline.cli_local import add_local_commands

    add_local_commands(sub)  # dev, doctor, db
    from kline_pipeline.export_cli import add_export_command

    add_export_command(sub)

    symbols = sub.add_parser(
        "symbols", help="add, list or remove symbol partitions",
        description="Symbols are the second partition dimension. `add` checks each symbol against "
        "Bybit's instruments-info (BYBIT_BASE_URL), in any status (delisted symbols too), before adding any of them. "
        "Without internet, `kline-pipeline simulate-exchange` serves an offline exchange "
        "(BYBIT_BASE_URL=http://127.0.0.1:8765). `list` warns (on stderr) about partitions that are "
        'not valid symbols, which the UI\'s "add partition" accepts; `remove` takes any of them away.',
    )
    actions = symbols.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add symbols, e.g. `kline-pipeline symbols add BTCUSDT ETHUSDT`")
    add.add_argument("symbols", nargs="+", metavar="SYMBOL",
                     help="Bybit symbol, uppercase, with its market: BTCUSDT (linear), spot:BTCUSDT, inverse:BTCUSD")
    actions.add_parser("list", help="print the symbols that have partitions")
    remove = actions.add_parser(
        "remove", help="remove a symbol partition (with --purge also its stored data)",
        description="Remove SYMBOL's partition from the Dagster instance (any text: also partitions "
        "that are not valid symbols). Its candles, rollups, outages, listing and live state stay in the database "
        "unless --purge deletes them (one transaction). Refused while a run or backfill still works "
        "on the symbol. Exit status: 0 removed, 2 refused (nothing changed).",
    )
    remove.add_argument("symbol", metavar="SYMBOL", help="the partition to remove, exactly as listed")
    remove.add_argument("--purge", action="store_true", help="also delete the symbol's rows from "
                        "price_klines, the six rollup tables, price_kline_gaps, price_kline_listings and price_kline_live_state")
    symbols.set_defaults(func=cmd_symbols)

    gaps = sub.add_parser(
        "gaps", help="report absent candles of a symbol over a time range",
        description="List the spans of absent 5-minute candles between --start and --end, each "
        "classified as missing (never fetched or lost), exchange_outage (the exchange had none), "
        "not_listed (before the listing) or not_yet_closed. Exit status: 0 when nothing is "
        "missing, 1 when candles are missing, 2 on bad arguments (also a malformed or unreachable "
        "KLINE_DATABASE_URL) or a symbol never added (nothing stored), 3 on an unexpected error.",
    )
    _add_range_arguments(gaps)
    gaps.add_argument("--json", action="store_true", help="print the report as JSON")
    gaps.set_defaults(func=cmd_gaps)

    api = sub.add_parser(
        "serve-api", help="serve the old HTTP API (POST/GET/DELETE /api/backfill) on top of Dagster",
        description="Serve the old system's API so its scripts keep working: POST /api/backfill "
        'with {"symbol", "start", "end"} launches a Dagster backfill (202 with its id and UI link; '
        "a repeated request for a still-running backfill, or one with a used Idempotency-Key "
        'header, gets 200 and that backfill unless the body has "force": true); '
        "GET /api/backfill?type=gaps&symbol=&start=&end= returns the gap report; "
        "GET /api/backfill?type=status&id= a backfill's progress; DELETE /api/backfill?id= cancels it; "
        "GET /api/health the doctor's report (200 healthy, else 503). Bad input gets a 400 JSON "
        '{"error", "field"} and launches nothing. Backfills execute only while the Dagster daemon '
        "runs (kline-pipeline dev starts it together with this API). Environment: KLINE_UI_URL "
        "(UI links; default: the running kline-pipeline dev's UI, else http://127.0.0.1:3001), "
        "KLINE_API_MAX_DAYS (longest range, default 3660).",
    )
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    api.add_argument("--port", type=port_number, default=3000, help="port (default 3000, the old API's)")
    api.set_defaults(func=cmd_serve_api)

    backfill = sub.add_parser(
        "backfill", help="launch, follow or cancel a Dagster backfill of a symbol's candles and rollups",
        description="Launch the same backfill as the UI's Materialize... button and the API's POST: "
        "price_klines_5m and its six rollups for every UTC day that [--start, --end) touches "
        "(a range starting mid-day includes that day; one ending at midnight excludes the next), "
        "for --symbol. A new symbol is checked against Bybit and added first. The Dagster daemon "
        "executes the backfill (kline-pipeline dev, or dagster-daemon run). --follow ID shows an "
        "existing backfill's progress until it ends; --cancel ID cancels one like the UI's Cancel "
        "(no new runs; queued runs canceled, running ones stopped with whole days kept; the daemon "
        "marks it CANCELED on its next loop). Exit status: 0 launched or canceled (with --wait or "
        "--follow: completed successfully / CANCELED), 1 with --wait or --follow when it failed or "
        "was canceled, 2 on bad arguments (nothing is changed), 130 on Ctrl-C (the backfill goes "
        "on; the message says how to follow or cancel it).",
    )
    _add_range_arguments(backfill, required=False)
    backfill.add_argument("--missing", action="store_true",
                          help="launch only the days of the range in which `gaps` finds missing candles (none: "
                               "nothing is launched, exit 0); the live schedule never fetches holes older than "
                               "its catch-up window, this fills them")
    backfill.add_argument("--follow", metavar="ID", help="show an existing backfill's progress until it ends")
    backfill.add_argument("--cancel", metavar="ID", help="cancel a backfill (the API's DELETE /api/backfill?id=)")
    backfill.add_argument("--wait", action="store_true",
                          help="stay until the backfill ends (a bar per partition), or with --cancel until it is CANCELED")
    backfill.add_argument("--poll-seconds", type=_positive_seconds, default=2.0, metavar="S",
                          help="with --wait or --follow: seconds between updates (default 2)")
    backfill.set_defaults(func=cmd_backfill)

    sim = sub.add_parser(
        "simulate-exchange", help="serve an offline Bybit-compatible API for tests and demos",
        description="Serve /v5/market/kline, /instruments-info and /time with Bybit's rules and "
        "deterministic candles. Point the pipeline at it with BYBIT_BASE_URL=http://HOST:PORT.",
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sim.add_argument("--port", type=port_number, default=8765, help="port (default 8765)")
    sim.add_argument("--instrument", action="append", default=[], metavar="[CATEGORY:]SYMBOL:LISTED",
                     help="list a symbol from a UTC date/time, e.g. NEWUSDT:2025-01-15 (every category) or "
                     "spot:NEWUSDT:2025-01-15 (spot only, its own prices) (repeatable; "
                     "default BTCUSDT, ETHUSDT, SOLUSDT)")
    sim.add_argument("--delist", action="append", default=[], metavar="[CATEGORY:]SYMBOL:TIME",
                     help="the symbol settles (status Delivering) in the day before TIME and is Closed, "
                     "without candles, from TIME on, e.g. LUNAUSDT:2022-05-13 (repeatable)")
    sim.add_argument("--clock-skew", type=_finite_seconds, default=0.0, metavar="SECONDS",
                     help="the exchange's clock runs SECONDS ahead of this machine's (negative: behind); "
                     "every reply's `time` and Timenow header carry it")
    sim.add_argument("--outage", action="append", default=[], metavar="SYMBOL:START/END[@HEAL]",
                     help="a span without candles, e.g. BTCUSDT:2025-01-10T00:00Z/2025-01-10T06:00Z (repeatable); "
                     "with @TIME the exchange fills it in (serves the candles) from that UTC time on its clock, "
                     "e.g. ...@2025-01-11T00:00Z, with @+N[s|m|h|d] that long after the simulator starts, e.g. ...@+10m")
    sim.add_argument("--fail-every", type=_at_least_one, default=None, metavar="N", help="fail every Nth request")
    sim.add_argument("--fail-kinds", default="", metavar="K1,K2",
                     help="faults to cycle through: 10006,10000,10016,5004,10018,429,502,403,badjson,truncated,"
                     "slow:SECONDS")
    sim.set_defaults(func=cmd_simulate)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit status 2 is bad input (argparse's too); an error nobody foresaw is
    3, not Python's 1, because 1 has a meaning (`gaps`: candles missing; `backfill --wait`:
    failed). Its traceback is printed with credentials redacted."""
    _quiet_and_link()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["db", "psql"]:
        # Everything after goes to psql as typed: argparse would claim options like -c for itself.
        args = build_parser().parse_args(argv[:2])
        args.psql_args = argv[2:]
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception:
        from kline_pipeline.store import redact_url

        print(redact_url(traceback.format_exc()), file=sys.stderr, end="")
        print("error: unexpected failure (above); nothing more was done", file=sys.stderr)
        return 3


def _quiet_and_link() -> None:
    """Dagster's beta/preview warnings off in this process and its children (KLINE_QUIET_WARNINGS=0
    keeps them); and the links this command prints point at the UI of the `kline-pipeline dev`
    running on this DAGSTER_HOME, on whatever port, unless KLINE_UI_URL is set."""
    from kline_pipeline.home import resolve_dagster_home, running_dev
    from kline_pipeline.quiet import QUIET_ENV, quiet_warnings

    if os.environ.setdefault(QUIET_ENV, "1") == "1":
        quiet_warnings()
    dev = running_dev(resolve_dagster_home().path)
    if dev and dev.get("ui_url") and not os.environ.get("KLINE_UI_URL"):
        os.environ["KLINE_UI_URL"] = dev["ui_url"]


if __name__ == "__main__":
    sys.exit(main())
