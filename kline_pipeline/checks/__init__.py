"""Per-partition asset checks on the raw candles and the rollups.

    facts.py   what the checks read, once per step (one query per kind of fact and symbol)
    rules.py   the predicates: no_missing_candles, valid_ohlcv, candles_fresh, exact_and_complete
    specs.py   the Dagster wiring: specs, check steps, results recorded per partition
"""

from kline_pipeline.checks.facts import Facts
from kline_pipeline.checks.rules import Outcome
from kline_pipeline.checks.specs import (
    EVALUATORS,
    FRESHNESS_CHECK_KEY,
    RAW_CHECK_KEYS,
    ROLLUP_CHECK_KEYS,
    evaluate,
    evaluation_events,
    log_evaluation,
    raw_checks,
    rollup_checks,
)

__all__ = ["EVALUATORS", "FRESHNESS_CHECK_KEY", "RAW_CHECK_KEYS", "ROLLUP_CHECK_KEYS", "Facts", "Outcome", "evaluate",
           "evaluation_events", "log_evaluation", "raw_checks", "rollup_checks"]
