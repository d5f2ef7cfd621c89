"""Loads SQL from the top-level `sql/` folder (shipped in the package as `kline_pipeline.sql`)."""

from functools import cache
from importlib import resources


@cache
def sql_text(name: str) -> str:
    """Text of `sql/<name>`; every value in it is a bound parameter, never formatted in."""
    return resources.files("kline_pipeline.sql").joinpath(name).read_text(encoding="utf-8")


def schema_files() -> list[str]:
    """Names of the schema files, applied in name order (`schema_*.sql`)."""
    names = [p.name for p in resources.files("kline_pipeline.sql").iterdir() if p.name.startswith("schema_")]
    return sorted(n for n in names if n.endswith(".sql"))
