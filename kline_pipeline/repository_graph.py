"""The repository's asset graph, for code that reads or writes backfills outside a Dagster run.

A backfill's stored target (asset keys and partition subsets) is built and read against the
graph of the whole repository: the one the daemon and the UI load from the workspace
(`kline_pipeline.definitions`). A graph of just the backfilled assets would differ from theirs
(no checks, no other assets), so this loads the definitions themselves, once per process, on
first use. This is the one module outside `definitions` that imports it; `backfills` and
`symbols` get the graph from here, so neither depends on the other to find it.
"""

import functools

from dagster._core.definitions.assets.graph.asset_graph import AssetGraph


@functools.cache
def asset_graph() -> AssetGraph:
    """The repository's asset graph (loading the definitions once per process)."""
    # Imported here, not at the top: `definitions` imports nearly every module, and importing
    # this one (e.g. from the CLI's argument parsing) must not load them all.
    from kline_pipeline.definitions import defs

    return defs.get_repository_def().asset_graph
