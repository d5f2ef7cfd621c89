"""Our real definitions, laid out one run per partition (no backfill policy), for bench_dagster.py.

Same assets, checks, resources and executor as kline_pipeline.definitions; only
`BackfillPolicy.multi_run` is replaced by None while the module is imported, so every asset is
built by its own code with `backfill_policy=None` (`with_attributes(backfill_policy=None)`
leaves the policy unchanged in dagster 1.13.27). Load it in its own DAGSTER_HOME session: its
asset keys are the real ones.
"""

import sys

import dagster as dg

# The asset modules must be built here, under the patch (the instance's storage module,
# kline_pipeline.instance.storage, is imported by the code server before this file: harmless).
_BUILT_ELSEWHERE = [name for name in ("kline_pipeline.assets", "kline_pipeline.rollups", "kline_pipeline.definitions")
                    if name in sys.modules]
if _BUILT_ELSEWHERE:
    raise RuntimeError(f"one_run_definitions must be imported before {_BUILT_ELSEWHERE} (in its own process)")

_multi_run = dg.BackfillPolicy.multi_run
dg.BackfillPolicy.multi_run = staticmethod(lambda max_partitions_per_run=1: None)
try:
    import kline_pipeline.definitions as _real_module
finally:
    dg.BackfillPolicy.multi_run = _multi_run

defs = _real_module.defs
