"""The embedded PostgreSQL used when KLINE_DATABASE_URL is unset (real pgserver binaries)."""

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import psycopg2

from kline_pipeline.embedded import embedded_database_url, stop_embedded
from kline_pipeline.models import Candle, to_ms
from kline_pipeline.store import KlineStore

DAY = datetime(2025, 1, 1, tzinfo=timezone.utc)

START_AND_REPORT_PID = (
    "from kline_pipeline.embedded import embedded_database_url; import psycopg2; "
    "url = embedded_database_url().replace('+psycopg2', ''); c = psycopg2.connect(url); cur = c.cursor(); "
    "cur.execute('SELECT pg_postmaster_start_time()::text, current_database()'); print(*cur.fetchone(), sep='|')"
)


def test_unset_url_means_embedded_and_data_survives_a_restart(pgdata):
    store = KlineStore()
    assert "host=" in store.resolved_url() and store.resolved_url().startswith("postgresql+psycopg2://")
    with store.day_writer() as writer:
        writer.write_day(symbol="BTCUSDT", start=DAY, end=DAY + timedelta(days=1),
                         candles=[Candle(to_ms(DAY), "1.5", "2", "1", "1.5", "3", "4.5")])
    for engine in list(__import__("kline_pipeline.store", fromlist=["_engines"])._engines.values()):
        engine.dispose()
    assert stop_embedded(pgdata) is True
    assert stop_embedded(pgdata) is False  # nothing left running on that directory
    url = embedded_database_url(pgdata).replace("+psycopg2", "")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), min(open)::text FROM price_klines")
        assert cur.fetchone() == (1, "1.5")
    conn.close()


def test_processes_starting_at_once_share_one_server(pgdata):
    procs = [subprocess.Popen([sys.executable, "-c", START_AND_REPORT_PID], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-500:] for _, err in outputs]
    answers = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(answers) == 1  # one postmaster start time: one server, started once
    assert answers.pop().endswith("|kline")


def test_the_local_template_keeps_dagsters_storage_in_the_same_embedded_server(pgdata, tmp_path, monkeypatch):
    """Without DAGSTER_PG_URL the template's storage is the database `dagster` beside `kline`."""
    import dagster as dg

    from kline_pipeline.instance.storage import DAGSTER_DATABASE
    from kline_pipeline_tests.test_deploy import local_template

    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    (tmp_path / "dagster.yaml").write_text(__import__("yaml").safe_dump(local_template()), encoding="utf-8")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        url = instance.event_log_storage.postgres_url
        assert url == embedded_database_url(pgdata, database=DAGSTER_DATABASE) and "host=" in url
        instance.add_dynamic_partitions("symbols", ["BTCUSDT"])
        assert instance.get_dynamic_partitions("symbols") == ["BTCUSDT"]
    # Closing the instance closed its pooled connections: the embedded server stops cleanly.
    assert stop_embedded(pgdata) is True
