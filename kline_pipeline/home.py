"""The local Dagster instance: which DAGSTER_HOME every `kline-pipeline` command uses, and
whether a `kline-pipeline dev` is already running on it.

One home, whatever the current directory: DAGSTER_HOME if set; else, in a source checkout
(an editable install: workspace.yaml next to the package), its `.dagster_home/`; else the
per-user `~/.kline_pipeline/dagster_home`. A home in the current directory made every command
run from elsewhere create a new, empty instance and database and report everything missing.
"""

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
USER_DAGSTER_HOME = Path("~/.kline_pipeline/dagster_home")
DEV_LOCK_NAME = "kline-dev.lock"
ANNOUNCED_ENV = "KLINE_DAGSTER_HOME_SHOWN"
"""Set by `dev` for its children to the home it already printed, so they do not print it again."""

_announced: set[Path] = set()


@dataclass(frozen=True)
class DagsterHome:
    path: Path
    why: str
    """How it was chosen, as printed: "set by DAGSTER_HOME", "this checkout's default", "the per-user default"."""


def is_source_checkout(root: Path = PROJECT_ROOT) -> bool:
    """True when the package runs from a checkout (editable install), not from an installed wheel."""
    return (root / "workspace.yaml").is_file() and (root / "pyproject.toml").is_file()


def resolve_dagster_home(*, root: Path = PROJECT_ROOT) -> DagsterHome:
    """The home every command uses (`root`: where the package runs from); see the module
    docstring. Creates nothing."""
    if os.environ.get("DAGSTER_HOME"):
        return DagsterHome(Path(os.environ["DAGSTER_HOME"]).expanduser().resolve(), "set by DAGSTER_HOME")
    if is_source_checkout(root):
        return DagsterHome(root / ".dagster_home", "this checkout's default")
    return DagsterHome(USER_DAGSTER_HOME.expanduser(), "the per-user default")


def prepare_dagster_home(*, announce: bool = True) -> Path:
    """Resolve the home, create it, export it as DAGSTER_HOME for this process and its children,
    and write the packaged LOCAL instance template there if it has no dagster.yaml yet.

    The template (kline_pipeline/instance/local.yaml: SQLite storage, the same run queue and pool
    limits as production) is what every command, not only `dev`, then sees. The top-level
    dagster.yaml is the production config (PostgreSQL from env vars) and is never copied
    implicitly: it would fail without DAGSTER_PG_URL. Read through importlib.resources so an
    installed wheel finds the template as well as a checkout. Re-running changes nothing.
    """
    home = resolve_dagster_home()
    home.path.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home.path)
    shown = home.path in _announced or os.environ.get(ANNOUNCED_ENV) == str(home.path)
    if announce and not shown:  # once per process (and not again in dev's children)
        _announced.add(home.path)
        print(f"DAGSTER_HOME={home.path} ({home.why}; set DAGSTER_HOME to use another)", file=sys.stderr)
    config = home.path / "dagster.yaml"
    if not config.exists():
        template = resources.files("kline_pipeline.instance").joinpath("local.yaml")
        config.write_text(template.read_text(encoding="utf-8"), encoding="utf-8")
        print(f"wrote {config} from the local instance template (kline_pipeline/instance/local.yaml)", file=sys.stderr)
    return home.path


class DevAlreadyRunning(RuntimeError):
    """Another `kline-pipeline dev` holds the home's lock (or a port it needs is taken)."""


def running_dev(home: Path) -> dict[str, Any] | None:
    """What the `kline-pipeline dev` running on `home` wrote in its lock file, or None.

    The lock is an flock held for dev's lifetime: the kernel drops it when dev exits however it
    ends, so a file left behind by a killed dev never counts as running.
    """
    path = home / DEV_LOCK_NAME
    try:
        with path.open("r", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return json.loads(f.read() or "{}")
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def describe_dev(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid')}, UI {info.get('ui_url')}, old API {info.get('api_url') or 'off'}, "
            f"started {info.get('started')}")


def ui_url_of(host: str, port: int) -> str:
    """The UI base a browser on this machine can open (a wildcard bind is reached via loopback)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


def port_in_use(host: str, port: int) -> bool:
    """True if something listens on (host, port): a bind like the servers' own fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@contextmanager
def dev_lock(home: Path, info: dict[str, Any]) -> Iterator[None]:
    """Hold `home`'s dev lock while the block runs, recording `info` (pid, URLs) for others to read.

    Raises DevAlreadyRunning naming the running dev if another holds it. The file stays behind
    afterwards (unlocked, so it is ignored); removing it could race with a dev starting.
    """
    path = home / DEV_LOCK_NAME
    f = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            try:
                other = json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                other = {}
            raise DevAlreadyRunning(
                f"kline-pipeline dev is already running on DAGSTER_HOME={home} ({describe_dev(other)}); "
                f"use that one, or stop it first (Ctrl-C in its terminal, or kill {other.get('pid', '<pid>')})"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps(info))
        f.flush()
        yield
    finally:
        f.close()  # releases the lock
