"""Say truthfully why a run's worker process died.

When a run worker dies, the code server records "Run execution process … was terminated by
signal 9 (SIGKILL). This usually indicates that the process was killed by the operating system
due to running out of memory …" for EVERY SIGKILL (dagster._utils.get_run_crash_explanation).
An operator's `kill -9`, a container or pod being stopped, or Dagster's own forced termination
then sends people looking for a memory problem that does not exist.

The kernel counts its out-of-memory kills per cgroup (`oom_kill` in cgroup v2 `memory.events`,
cgroup v1 `memory.oom_control`). `explain_run_crash` compares that count with its value when
the code server loaded our definitions and blames memory only if it rose. `install()` puts it in
place of Dagster's text in the code server (called by `kline_pipeline.definitions`, which the
code server loads; every other process is unaffected in practice: only the code server reports
run-worker crashes). If a Dagster version no longer has the hook, nothing is replaced and
Dagster's own text is used.
"""

import signal
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Where Dagster's code looks the explanation up by name (module globals bound at import).
_HOOKS = ("dagster._grpc.server", "dagster._core.executor.multiprocess")

_baseline: int | None = None
_dagster_explanation: Callable[[str, int], str] | None = None


def _candidates(root: Path, proc_cgroup: Path) -> list[Path]:
    """Files that may hold this process's oom_kill count, most specific first."""
    files: list[Path] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0":  # cgroup v2
            files.append(root / path.lstrip("/") / "memory.events")
        elif "memory" in controllers.split(","):  # cgroup v1
            files.append(root / "memory" / path.lstrip("/") / "memory.oom_control")
    # Inside a container the process's own cgroup is usually mounted at the root.
    return files + [root / "memory.events", root / "memory" / "memory.oom_control"]


def oom_kills(*, root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """The kernel's count of out-of-memory kills in this process's cgroup; None if not readable."""
    for path in _candidates(root, proc_cgroup):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def explain_run_crash(prefix: str, exit_code: int, *, baseline: int | None = None, now: int | None = None) -> str:
    """Dagster's explanation of a dead run worker, except that SIGKILL is blamed on memory only
    when the kernel recorded an out-of-memory kill since `baseline` (default: at `install()`)."""
    if exit_code != -signal.SIGKILL:
        return _original(prefix, exit_code)
    before = _baseline if baseline is None else baseline
    after = oom_kills() if now is None else now
    killed = f"{prefix} was killed with signal 9 (SIGKILL)"
    if after is None or before is None:
        return (f"{killed}: either from outside the run (kill -9, a container or pod being stopped) or by the "
                "kernel's out-of-memory killer; this system does not report which (no cgroup oom_kill count). "
                "The days it wrote are complete; relaunch the partitions that did not finish.")
    if after > before:
        return (f"{killed} by the kernel's out-of-memory killer (oom_kill count {before} -> {after}): give runs more "
                "memory or fewer partitions per run. The days it wrote are complete.")
    return (f"{killed} from outside the run (kill -9, a container or pod being stopped), not for memory: the "
            f"kernel recorded no out-of-memory kill (oom_kill count {after}, unchanged). The days it wrote are "
            "complete; relaunch the partitions that did not finish.")


def _original(prefix: str, exit_code: int) -> str:
    if _dagster_explanation is not None:
        return _dagster_explanation(prefix, exit_code)
    from dagster._utils import get_run_crash_explanation

    return get_run_crash_explanation(prefix, exit_code)


def install() -> None:
    """Use `explain_run_crash` wherever Dagster explains a dead run worker (idempotent)."""
    import importlib

    global _baseline, _dagster_explanation
    if _dagster_explanation is None:
        from dagster._utils import get_run_crash_explanation

        _dagster_explanation = get_run_crash_explanation
        _baseline = oom_kills()
    for name in _HOOKS:
        module = importlib.import_module(name)
        if callable(getattr(module, "get_run_crash_explanation", None)):
            module.get_run_crash_explanation = explain_run_crash  # type: ignore[attr-defined]
