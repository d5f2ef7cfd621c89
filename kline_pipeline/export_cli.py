"""`kline-pipeline export`: a symbol's candles of one timeframe to Parquet, Feather or CSV, with a manifest."""

import argparse
import sys
from pathlib import Path


def add_export_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    export = sub.add_parser(
        "export", help="write a symbol's stored candles to .parquet, .feather or .csv with a completeness manifest",
        description="Write the stored candles of --symbol and --timeframe (5m or a rollup: 15m, 30m, 1h, 4h, 12h, "
        "1d) opening in [--start, --end) to --out, in freqtrade's columns (date, open, high, low, close, volume); "
        "the format follows the extension (.parquet, .feather, .csv). Next to it, OUT.manifest.json: per UTC day "
        "the expected / present / exchange_outage / missing / not_listed / not_yet_closed 5m candles (as "
        "`kline-pipeline gaps` counts them), the listing, the file's SHA-256, the source and when it was made. "
        "Exit status: 0 written; 1 refused because candles are missing without an explanation (nothing written; "
        "--allow-missing writes anyway and records it); 2 on bad arguments (nothing written); 3 on an unexpected "
        "error.",
    )
    export.add_argument("--symbol", required=True, help="Bybit symbol, e.g. BTCUSDT")
    export.add_argument("--timeframe", required=True, help="5m, 15m, 30m, 1h, 4h, 12h or 1d")
    export.add_argument("--start", required=True, help="ISO 8601 UTC time on the timeframe's grid, e.g. 2025-01-01T00:00:00Z")
    export.add_argument("--end", required=True, help="ISO 8601 UTC time (exclusive), e.g. 2025-02-01T00:00:00Z")
    export.add_argument("--out", required=True, type=Path, help="file to write: NAME.parquet, NAME.feather or NAME.csv")
    export.add_argument("--allow-missing", action="store_true",
                        help="write even when candles are missing without an explanation (the manifest says so)")
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from kline_pipeline import clock
    from kline_pipeline.backfill_requests import RequestError, validate_request
    from kline_pipeline.cli_support import fail as _fail
    from kline_pipeline.export import ExportError, IncompleteRange, export_klines, output_format, validate_grid, \
        validate_timeframe
    from kline_pipeline.instance.setup import dagster_home
    from kline_pipeline.store import KlineStore

    dagster_home()  # the embedded database lives under it
    now = clock.utcnow()
    try:  # every bad argument before touching the database: exit 2, nothing written
        symbol, start, end = validate_request(args.symbol, args.start, args.end, now=now, max_days=100 * 366)
        timeframe = validate_timeframe(args.timeframe)
        validate_grid(timeframe, start, end)
        output_format(args.out)
    except RequestError as exc:
        return _fail(f"--{exc.field}: {str(exc).removeprefix(f'{exc.field}: ')}")
    except ExportError as exc:
        return _fail(str(exc) if str(exc).startswith("--") else f"--{exc.field}: {exc}")
    try:
        done = export_klines(KlineStore(), symbol=symbol, timeframe=timeframe, start=start, end=end, out=args.out,
                             now=now, allow_missing=args.allow_missing)
    except IncompleteRange as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, ConnectionError) as exc:  # KLINE_DATABASE_URL wrong or unreachable
        return _fail(str(exc))
    totals = done.manifest["totals"]
    assert isinstance(totals, dict)  # export_klines writes the gap report's counts there
    print(f"{done.path}: {done.rows} {timeframe} candles of {symbol}, {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC "
          f"(5m: {totals['present']} of {totals['expected']} expected, {totals['exchange_outage']} exchange outage, "
          f"{totals['missing']} missing); manifest {done.manifest_path}")
    return 0
