"""The one place the pipeline asks for the current time.

Tests replace `utcnow` (monkeypatch) so "now" agrees with the simulator's clock; nothing else
in the pipeline calls `datetime.now` directly.
"""

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Current aware UTC time."""
    return datetime.now(timezone.utc)
