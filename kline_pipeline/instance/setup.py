"""The Dagster instance every `kline-pipeline` command and the old API work on.

Reads DAGSTER_HOME (resolved and prepared by `kline_pipeline.home`: the same home whatever the
current directory) and exports it, so Dagster and the embedded PostgreSQL under it agree. Lives
apart from the command line so that the API (`kline_pipeline.api`) and the command modules get
their instance without importing `kline_pipeline.cli`, which imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # dagster is imported on use: `kline-pipeline --help` and argument errors stay fast
    import dagster as dg


def dagster_home() -> Path:
    """The one DAGSTER_HOME of every command (see kline_pipeline/home.py), prepared and exported."""
    from kline_pipeline.home import prepare_dagster_home

    return prepare_dagster_home()


def local_instance() -> dg.DagsterInstance:
    """The Dagster instance of `dagster_home()` (its dagster.yaml; created on first use)."""
    import dagster as dg

    dagster_home()
    return dg.DagsterInstance.get()
