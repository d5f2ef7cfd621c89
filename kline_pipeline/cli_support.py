"""What the `kline-pipeline` command modules share: the bad-input exit, the offline hint and the
port option's argparse type.

Imported by `kline_pipeline.cli` and by the modules its commands live in (`cli_local`,
`backfill_cli`, `export_cli`), so none of them imports `cli`, which imports them. Reads nothing
but the environment (BYBIT_BASE_URL for the hint); writes only to stderr.
"""

import argparse
import os
import sys


def fail(message: str) -> int:
    """Print a bad-input error (credentials redacted) and return exit status 2."""
    from kline_pipeline.store import redact_url

    print(f"error: {redact_url(message)}", file=sys.stderr)
    return 2


def offline_hint(exc: Exception) -> str:
    """Where Bybit cannot be reached at all: say that the offline simulator exists."""
    from kline_pipeline.bybit import BybitUnavailableError

    if not isinstance(exc, BybitUnavailableError) or "connection error" not in str(exc):
        return ""
    where = os.environ.get("BYBIT_BASE_URL") or "https://api.bybit.com"
    return (f"\nhint: {where} could not be reached. Without internet, serve the bundled exchange simulator "
            "and point the pipeline at it:\n  kline-pipeline simulate-exchange --port 8765 &\n"
            "  export BYBIT_BASE_URL=http://127.0.0.1:8765\n(README: Offline mode)")


def port_number(text: str) -> int:
    """argparse type: a TCP port 1-65535 (a bad one is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: use 1-65535") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number: use 1-65535")
    return value

