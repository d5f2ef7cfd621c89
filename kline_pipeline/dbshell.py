"""Opening the candle database with psql: a URL libpq accepts, and the psql to run.

The store's URLs name SQLAlchemy's driver (`postgresql+psycopg2://`), which psql rejects, and
the embedded server listens on a Unix socket in its data directory (`?host=/path`). psql gets
the libpq form without the password; a password travels in PGPASSWORD, never on the command
line or in output.
"""

import os
import shutil
from pathlib import Path

from sqlalchemy.engine import URL, make_url


def libpq_url(url: str) -> str:
    """`url` as libpq (psql, pg_dump) takes it: scheme postgresql://, no driver, no password
    (neither in the userinfo nor as `?password=`, see `password_of`; nor `?sslpassword=`, which
    libpq then asks for, as no environment variable can carry it)."""
    parsed = make_url(url)
    query = {k: v for k, v in parsed.query.items() if k not in ("password", "sslpassword")}
    bare = URL.create("postgresql", username=parsed.username, host=parsed.host, port=parsed.port,
                      database=parsed.database, query=query)
    return bare.render_as_string(hide_password=False)


def password_of(url: str) -> str | None:
    """The password of `url`, from its userinfo or its `?password=` parameter."""
    parsed = make_url(url)
    value = parsed.password or parsed.query.get("password")
    return value if isinstance(value, str) else None


def psql_binary() -> str:
    """The psql bundled with the embedded server (pgserver, PostgreSQL 16), else psql on PATH."""
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("psql")
    if found is None:
        raise FileNotFoundError("psql was not found: install the PostgreSQL client (e.g. apt-get install postgresql-client)")
    return found


def psql_invocation(url: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that run psql on the database of `url` with extra psql `args`."""
    env = dict(os.environ)
    password = password_of(url)
    if password:
        env["PGPASSWORD"] = password
    return [psql_binary(), libpq_url(url), *args], env
