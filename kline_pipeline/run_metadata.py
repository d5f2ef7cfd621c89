"""Each partition's own materialization metadata in a run of many partitions."""

from collections.abc import Mapping

import dagster as dg
from dagster._core.definitions.metadata import RawMetadataValue

Metadata = dict[str, RawMetadataValue]
"""Materialization or check metadata as this project builds it: plain values Dagster accepts as they are."""


def add_partition_metadata(context: dg.AssetExecutionContext, by_partition: Mapping[str, Mapping[str, object]]) -> None:
    """Attach `by_partition[key]` to the materialization of partition `key`, for every key.

    The same as `context.add_asset_metadata(metadata, partition_key=key)` for each key, at a
    fraction of the cost: dagster 1.13.27 validates each such call by enumerating the run's whole
    partition range again, with two queries of the dynamic `symbols` partitions per key in it
    (~7 ms a call; 644 calls, 4.3 s, in a 92-day run of our seven assets — more than the run's
    data work). Here the keys are validated once against the run's partition keys, then written
    to the step's metadata accumulator, the very place `add_asset_metadata` writes to.
    """
    unknown = sorted(set(by_partition) - set(context.partition_keys))
    if unknown:
        raise dg.DagsterInvariantViolationError(
            f"metadata for partitions this run does not materialize: {', '.join(unknown[:5])}")
    step = context.op_execution_context._step_execution_context  # noqa: SLF001 (see the docstring)
    accumulator = step._metadata_accumulator
    for key, metadata in by_partition.items():
        accumulator = accumulator.with_additional_asset_metadata(
            asset_key=context.asset_key, partition_key=key, metadata=metadata)
    step._metadata_accumulator = accumulator
