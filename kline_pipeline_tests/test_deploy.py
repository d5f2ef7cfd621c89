"""Production deployment: the instance configs, the Helm values and the image's wheel.

The production dagster.yaml is loaded against a real PostgreSQL server and runs one partition
end to end, with Dagster's storage and the candle store as two databases on the same server.
Helm and Docker have no engine here, so their files are checked for the properties docs/deploy.md
promises, and the wheel the Dockerfile installs is built from exactly the files it copies.
"""

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.instance.config import dagster_instance_config

from kline_pipeline import store as store_module
from kline_pipeline.assets import price_klines_5m
from kline_pipeline.bybit import BybitClient
from kline_pipeline.instance.env import DAGSTER_ENV, EVENT_BATCH_ENV, EVENT_BATCH_SIZE
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.rollups import rollup_assets
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline.store import KlineStore
from kline_pipeline_tests.conftest import _admin_url

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_YAML = ROOT / "dagster.yaml"
HELM_VALUES = ROOT / "deploy" / "helm" / "values.yaml"
DOCKERFILE = ROOT / "Dockerfile"

BYBIT_IP_LIMIT_PER_SECOND = 600 / 5
"""Bybit's public market limit: 600 requests per 5 s per IP."""


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def local_template() -> dict[str, Any]:
    return yaml.safe_load(resources.files("kline_pipeline.instance").joinpath("local.yaml").read_text(encoding="utf-8"))


STORAGE_CLASSES = {"run_storage": "PooledPostgresRunStorage", "event_log_storage": "PooledPostgresEventLogStorage",
                   "schedule_storage": "PooledPostgresScheduleStorage"}


def client_rate() -> float:
    """The Bybit client's default requests/s: what one step may spend."""
    return BybitClient().requests_per_second


# --------------------------------------------------------------------------- instance configs


def test_production_dagster_yaml_passes_dagsters_instance_schema(tmp_path):
    shutil.copyfile(PRODUCTION_YAML, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))  # raises on any schema error
    assert custom_class is None
    # Storage comes only from the environment, never from a literal in the file: the pooled classes.
    for section, cls in STORAGE_CLASSES.items():
        assert config[section] == {"module": "kline_pipeline.instance.storage", "class": cls,
                                   "config": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert config["concurrency"]["pools"]["default_limit"] * client_rate() < BYBIT_IP_LIMIT_PER_SECOND
    # max_concurrent_runs lives under concurrency: only (Dagster 1.13 rejects it in both places).
    assert "max_concurrent_runs" not in config["run_coordinator"]["config"]
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_retries"]["enabled"] is True and config["run_retries"]["max_retries"] >= 1
    assert config["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert config["telemetry"] == {"enabled": False}


def test_production_dagster_yaml_without_its_env_var_fails_naming_it(tmp_path, monkeypatch):
    shutil.copyfile(PRODUCTION_YAML, tmp_path / "dagster.yaml")
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    with pytest.raises(dg.DagsterInvalidConfigError, match="DAGSTER_PG_URL"):
        dg.DagsterInstance.from_config(str(tmp_path))


def test_local_template_keeps_production_queue_pools_and_storage_classes(tmp_path, dagster_storage):
    local, production = local_template(), load_yaml(PRODUCTION_YAML)
    for section in ("concurrency", "run_coordinator", "backfills", "telemetry"):
        assert local[section] == production[section], section
    for section, cls in STORAGE_CLASSES.items():  # the same classes; the URL from DAGSTER_PG_URL, else embedded
        assert local[section] == {"module": "kline_pipeline.instance.storage", "class": cls, "config": {}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(local), encoding="utf-8")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PooledPostgresRunStorage"
        assert instance.run_storage.postgres_url == dagster_storage
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 2
        # Daemon settings measured in bench/bench_dagster.py (docs/performance.md).
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert instance.get_backfill_settings()["use_threads"] is True


@pytest.fixture
def two_databases(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(Dagster storage URL, candle store URL): two fresh databases on ONE PostgreSQL server."""
    admin_url = _admin_url(tmp_path_factory.mktemp("pg"))
    suffix = f"{os.getpid()}_{secrets.token_hex(3)}"
    names = (f"kline_test_dagster_{suffix}", f"kline_test_candles_{suffix}")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    urls = [sa.make_url(admin_url).set(database=n).render_as_string(hide_password=False) for n in names]
    yield urls[0], urls[1]
    for key in [k for k in store_module._engines if sa.make_url(k).database in names]:
        store_module._engines.pop(key).dispose()
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_production_instance_runs_a_partition_with_storage_and_candles_in_two_databases(
    tmp_path, monkeypatch, two_databases
):
    dagster_url, candles_url = two_databases
    assert dagster_url.startswith("postgresql+psycopg2://")  # the scheme dagster.yaml documents
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PRODUCTION_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_url)
    simulator = BybitSimulator()
    simulator.start()
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PooledPostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PooledPostgresScheduleStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.run_monitoring_enabled and instance.run_retries_enabled
            assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
            instance.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT"])
            result = dg.materialize(
                [price_klines_5m, *rollup_assets],
                instance=instance,
                partition_key="2025-01-01|BTCUSDT",
                resources={
                    "bybit": BybitClient(base_url=simulator.url, requests_per_second=1000),
                    "kline_store": KlineStore(database_url=candles_url),
                },
            )
            assert result.success
            # The pool the Bybit step ran in is known to the shared storage, with the file's limit.
            limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
            assert limits.get("bybit_api") == 2
    finally:
        simulator.stop()

    engine = sa.create_engine(dagster_url)
    try:
        with engine.connect() as conn:
            status = conn.execute(sa.text("SELECT status FROM runs WHERE run_id = :r"), {"r": result.run_id}).scalar()
            materialized = conn.execute(
                sa.text(
                    "SELECT count(DISTINCT asset_key) FROM event_logs "
                    "WHERE run_id = :r AND dagster_event_type = 'ASSET_MATERIALIZATION'"
                ),
                {"r": result.run_id},
            ).scalar()
            partitions = conn.execute(sa.text("SELECT partition FROM dynamic_partitions")).scalars().all()
    finally:
        engine.dispose()
    assert status == "SUCCESS"
    assert materialized == 1 + len(rollup_assets)
    assert partitions == ["BTCUSDT"]

    engine = sa.create_engine(candles_url)
    try:
        with engine.connect() as conn:
            candles = conn.execute(
                sa.text("SELECT count(*) FROM price_klines WHERE symbol = 'BTCUSDT' AND timeframe = '5m'")
            ).scalar()
            hours = conn.execute(sa.text("SELECT count(*) FROM price_klines_1h WHERE symbol = 'BTCUSDT'")).scalar()
            days = conn.execute(sa.text("SELECT count(*) FROM price_klines_1d WHERE symbol = 'BTCUSDT'")).scalar()
    finally:
        engine.dispose()
    assert (candles, hours, days) == (288, 24, 1)
    # Separate databases: neither schema leaks into the other.
    assert "runs" in table_names(dagster_url) and "price_klines" not in table_names(dagster_url)
    assert "price_klines" in table_names(candles_url) and "runs" not in table_names(candles_url)


# --------------------------------------------------------------------------- Helm values


def test_helm_values_deploy_the_documented_topology():
    values = load_yaml(HELM_VALUES)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"

    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"]  # external PostgreSQL
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert "postgresqlPassword" not in pg and values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    module = pyproject["tool"]["dagster"]["module_name"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == module
    assert deployment["image"]["tag"] not in (None, "", "latest")  # runs must use the code the UI showed
    env = {e["name"] for e in deployment["env"]}
    assert {"BYBIT_BASE_URL", "BYBIT_CATEGORY"} <= env
    # Runs (which inherit the code server's env) write materializations in batches.
    assert {e["name"]: e.get("value") for e in deployment["env"]}[EVENT_BATCH_ENV] == str(EVENT_BATCH_SIZE)
    assert "KLINE_DATABASE_URL" not in env and deployment["envSecrets"]  # the URL carries a password

    daemon = values["dagsterDaemon"]
    # The daemon's environment makes a canceled backfill stop queueing runs and batches planned
    # materializations (as `kline-pipeline dev` does).
    assert {e["name"]: e["value"] for e in daemon["env"]} == DAGSTER_ENV
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] >= 1
    # The chart fails if the run limit is set in both places.
    assert "maxConcurrentRuns" not in values["concurrency"].get("runs", {})


def test_helm_values_mirror_the_production_instance_and_respect_bybits_limit():
    values, production = load_yaml(HELM_VALUES), load_yaml(PRODUCTION_YAML)
    pool_limit = values["concurrency"]["pools"]["defaultLimit"]
    assert values["concurrency"]["enabled"] is True
    assert pool_limit == production["concurrency"]["pools"]["default_limit"]
    # Pods each have their own limiter; only the pool bounds the cluster's total request rate.
    assert pool_limit * client_rate() < BYBIT_IP_LIMIT_PER_SECOND

    daemon = values["dagsterDaemon"]
    monitoring, retries = production["run_monitoring"], production["run_retries"]
    assert daemon["runMonitoring"]["enabled"] is monitoring["enabled"] is True
    assert daemon["runMonitoring"]["maxRuntimeSeconds"] == monitoring["max_runtime_seconds"]
    assert daemon["runRetries"] == {
        "enabled": retries["enabled"],
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }
    assert values["telemetry"] == production["telemetry"]


# --------------------------------------------------------------------------- Dockerfile and wheel


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_builds_the_package_wheel_and_installs_it(tmp_path):
    instructions = dockerfile_instructions()
    assert [args.split()[0] for op, args in instructions if op == "FROM"] == ["python:3.11-slim", "python:3.11-slim"]

    # Recreate the build stage's context: only what its COPY lines bring in (minus bytecode).
    build_stage = instructions[: [op for op, _ in instructions].index("FROM", 1)]
    context = tmp_path / "context"
    context.mkdir()
    for op, args in build_stage:
        if op == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                else:
                    shutil.copyfile(src, context / source)

    (wheel_cmd,) = [shlex.split(args) for op, args in build_stage if op == "RUN" and " wheel " in f" {args} "]
    wheel_dir = wheel_cmd[wheel_cmd.index("-w") + 1]
    assert wheel_cmd[:4] == ["python", "-m", "pip", "wheel"] and "--no-deps" in wheel_cmd and wheel_cmd[-1] == "."
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), "."],
        cwd=context, check=True, timeout=120,
    )
    (wheel,) = out.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kline_pipeline/sql/schema_001_price_klines.sql" in names
    assert "kline_pipeline/simulator/server.py" in names and "kline_pipeline/simulator/__init__.py" in names
    assert "kline_pipeline/instance/local.yaml" in names  # `kline-pipeline dev` needs it installed
    # Every module of the package, subpackages included (kline_pipeline.checks was once left out).
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "kline_pipeline").rglob("*.py")}
    assert modules - names == set()

    # The runtime stage copies that directory and installs that wheel (with the k8s extra) by path.
    runtime = "\n".join(args for op, args in instructions[len(build_stage):])
    assert f"--from=build {wheel_dir} {wheel_dir}" in runtime
    install = re.search(r'wheel="\$\(ls (\S+)\)"', runtime)
    assert install and Path(install.group(1)).parent.as_posix() == wheel_dir
    assert Path(wheel.name).match(Path(install.group(1)).name)
    assert '"${wheel}[k8s]"' in runtime
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert any(req.startswith("dagster-k8s") for req in extras["k8s"])

    # The container serves the same module the workspace and Helm values load.
    (cmd,) = [args for op, args in instructions if op == "CMD"]
    module = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["dagster"]["module_name"]
    assert yaml.safe_load(cmd)[:3] == ["dagster", "code-server", "start"] and module in yaml.safe_load(cmd)
