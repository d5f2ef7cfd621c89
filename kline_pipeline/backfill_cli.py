"""`kline-pipeline backfill`: launch a backfill, follow one, or cancel one.

    backfill --symbol S --start T --end T [--wait]   launch (the API's POST), optionally follow
    backfill --symbol S --start T --end T --missing  launch only the days the gap report finds
                                                     candles missing in (nothing if none)
    backfill --follow ID                             follow a running backfill until it ends
    backfill --cancel ID [--wait]                    cancel (the API's DELETE), optionally until CANCELED

Exit status: 0 launched / canceled / (following) succeeded; 1 when a followed backfill failed or
was canceled (or a cancel did not end within the wait); 2 on bad arguments (nothing changed);
130 when interrupted (the backfill itself goes on; the message says how to follow or cancel it).
"""

import argparse
import sys
import time
from datetime import date, datetime

import dagster as dg

from kline_pipeline.cli_support import fail


def cmd_backfill(args: argparse.Namespace, instance: dg.DagsterInstance) -> int:
    from kline_pipeline.backfill_requests import RequestError, validate_backfill_id

    if args.cancel is not None or args.follow is not None:
        option = "--cancel" if args.cancel is not None else "--follow"
        given = [name for name in ("symbol", "start", "end") if getattr(args, name) is not None]
        given += ["missing"] if args.missing else []
        if given:
            return fail(f"{option} takes a backfill id only, not --{given[0]}; nothing was changed")
        try:
            backfill_id = validate_backfill_id(args.cancel if args.cancel is not None else args.follow)
        except RequestError as exc:
            return fail(f"{option}: {exc}")
        if instance.get_backfill(backfill_id) is None:
            return fail(f"{option}: no backfill with id {backfill_id!r} in DAGSTER_HOME's instance")
        if args.cancel is not None:
            return _cancel(instance, backfill_id, wait=args.wait)
        return follow(instance, backfill_id, poll_seconds=args.poll_seconds)
    missing = [name for name in ("symbol", "start", "end") if getattr(args, name) is None]
    if missing:
        return fail(f"--{missing[0]} is required to launch a backfill (or give --follow ID / --cancel ID); "
                     "nothing was launched")
    return _launch(args, instance)


def _launch(args: argparse.Namespace, instance: dg.DagsterInstance) -> int:
    from kline_pipeline import clock
    from kline_pipeline.backfill_requests import RequestError, max_days_from_env, validate_request
    from kline_pipeline.backfills import launch_backfill
    from kline_pipeline.bybit import BybitClient, BybitError
    from kline_pipeline.idempotency import launch_once

    bybit = BybitClient()
    try:
        symbol, start, end = validate_request(args.symbol, args.start, args.end, now=clock.utcnow(),
                                              max_days=max_days_from_env(), bybit=bybit)
        if args.missing:
            days = _missing_days(symbol, start, end)
            if not days:
                print(f"{symbol}: no missing candle in [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC "
                      "(`kline-pipeline gaps` shows the report); nothing was launched")
                return 0
            launched = launch_backfill(instance, symbol=symbol, start=start, end=end, now=clock.utcnow(),
                                       bybit=bybit, launched_by="cli", only_days=days)
        else:
            # Always a new backfill from the terminal (an operator asked for it); tagged with its
            # request so the API's repeated POSTs find it while it runs.
            launched = launch_once(instance, symbol=symbol, start=start, end=end, now=clock.utcnow(),
                                   bybit=bybit, launched_by="cli", force=True)
    except RequestError as exc:
        message = str(exc).removeprefix(f"{exc.field}: ")  # name the option once, as typed
        return fail(f"--{exc.field}: {message}; nothing was launched")
    except (ValueError, BybitError) as exc:
        from kline_pipeline.cli_support import offline_hint

        return fail(f"{exc}; nothing was launched{offline_hint(exc)}")
    keys = launched.partition_keys
    print(f"launched backfill {launched.backfill_id}: {len(keys)} partitions ({keys[0]} .. {keys[-1]}) "
          f"x {len(launched.asset_keys)} assets" + (f"; added symbol {symbol}" if launched.added_symbol else ""))
    print(f"UI: {launched.ui_url}", flush=True)
    if not args.wait:
        print("the Dagster daemon runs it (kline-pipeline dev, or dagster-daemon run); follow it with "
              f"`kline-pipeline backfill --follow {launched.backfill_id}` or in the UI")
        return 0
    return follow(instance, launched.backfill_id, poll_seconds=args.poll_seconds)


def _missing_days(symbol: str, start: datetime, end: datetime) -> list[date]:
    """The UTC days of [start, end) holding candles the gap report calls missing (never fetched or
    lost; exchange outages and pre-listing time are not missing, so a re-fetch cannot fill them)."""
    from kline_pipeline import clock
    from kline_pipeline.gaps import gap_report, missing_days
    from kline_pipeline.store import KlineStore

    return missing_days(gap_report(KlineStore(), symbol=symbol, start=start, end=end, now=clock.utcnow()))


def _interrupted(backfill_id: str, what: str) -> int:
    from kline_pipeline.backfills import backfill_ui_url

    print(f"\ninterrupted: only this command stopped; {what}\n"
          f"  follow it:  kline-pipeline backfill --follow {backfill_id}\n"
          f"  in the UI:  {backfill_ui_url(backfill_id)}\n"
          f"  cancel it:  kline-pipeline backfill --cancel {backfill_id}", file=sys.stderr)
    return 130


def follow(instance: dg.DagsterInstance, backfill_id: str, *, poll_seconds: float) -> int:
    """Redraw per-partition progress bars until the backfill ends: 0 on success, 1 otherwise.

    On a terminal the block is redrawn in place each poll; otherwise (a log, a pipe) a partition's
    line is printed only when it changes, so the output stays readable. Ctrl-C stops following,
    not the backfill, and says so.
    """
    from kline_pipeline.backfills import backfill_status, progress_lines, summary_line

    tty = sys.stdout.isatty()
    shown: dict[str, str] = {}
    drawn = 0
    try:
        while True:
            status = backfill_status(instance, backfill_id)
            keys = [row["partition"] for row in status["partitions"]]
            lines = [*zip(keys, progress_lines(status)), ("", summary_line(status))]
            if tty:
                # Move the cursor back up over the previous block and overwrite it line by line.
                sys.stdout.write((f"\x1b[{drawn}F" if drawn else "") + "".join(f"\x1b[2K{line}\n" for _, line in lines))
                drawn = len(lines)
            else:
                for key, line in lines:
                    if shown.get(key) != line:
                        shown[key] = line
                        print(line)
            sys.stdout.flush()
            if status["done"]:
                return 0 if status["succeeded"] else 1
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        return _interrupted(backfill_id, f"backfill {backfill_id} continues in the Dagster daemon.")


def _cancel(instance: dg.DagsterInstance, backfill_id: str, *, wait: bool) -> int:
    from kline_pipeline.cancel import cancel_backfill, sweep_until_canceled

    started = time.monotonic()
    result = cancel_backfill(instance, backfill_id)
    print(result.summary(), flush=True)
    if result.already_finished:
        return 0
    if not wait:
        print("the Dagster daemon marks it CANCELED on its next loop (within about 30 s); "
              f"`kline-pipeline backfill --cancel {backfill_id} --wait` waits for that")
        return 0
    try:
        final = sweep_until_canceled(instance, backfill_id)
    except KeyboardInterrupt:
        return _interrupted(backfill_id, f"the cancel stands: the Dagster daemon finishes it (backfill {backfill_id} "
                            "is CANCELING).")
    print(f"backfill {backfill_id}: {final} after {time.monotonic() - started:.0f} s"
          + ("" if final == "CANCELED" else "; only the Dagster daemon marks it CANCELED: is it running?"))
    return 0 if final == "CANCELED" else 1
