"""Keep the command line's output to what the user needs.

Dagster warns, at every import of our definitions, that parameters we chose on purpose are in
beta or preview (`backfill_policy`, partitioned asset check specs): seven BetaWarning blocks and
one PreviewWarning before every command's output; pgserver's platformdirs adds one about
XDG_RUNTIME_DIR. `kline-pipeline` sets KLINE_QUIET_WARNINGS=1 for itself and its children
(`dagster dev`, its code server and run workers inherit it); the package applies the filters on
import when it is set (kline_pipeline/__init__.py). `dagster dev` itself warns before any of our
code runs (its command is superseded by `dg dev`); that one is filtered for the child through
PYTHONWARNINGS, by message: Python resolves -W categories before site-packages can be imported,
so dagster's warning classes cannot be named there. KLINE_QUIET_WARNINGS=0 shows them all again.
"""

import warnings
from collections.abc import Mapping

QUIET_ENV = "KLINE_QUIET_WARNINGS"
DAGSTER_DEV_FILTER = "ignore:Function `dev_command` is superseded"


def quiet_warnings() -> None:
    """Ignore the warning categories described above, in this process only."""
    from dagster_shared.utils.warnings import BetaWarning, PreviewWarning  # what dagster raises; light to import

    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def quiet_child_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a child process (e.g. `dagster dev`), as quiet as this one; the user's own
    PYTHONWARNINGS entries are kept."""
    child = dict(env)
    if child.get(QUIET_ENV) == "1":
        child["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), DAGSTER_DEV_FILTER) if w)
    return child
