"""Outages that repair themselves: due re-fetches, a simulator outage that heals, the ledger, rollups and checks follow."""

import json
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from kline_pipeline import clock
from kline_pipeline.cli import main
from kline_pipeline.health import OK, repairs
from kline_pipeline.ingest import day_start, ingest_days
from kline_pipeline.models import to_ms
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.repair import due_repairs, parse_delays
from kline_pipeline.repair_job import outage_repair, outage_repair_job
from kline_pipeline.sensors import RollupCursor, evaluate_tick, requested_partitions
from kline_pipeline.simulator import BybitSimulator
from kline_pipeline_tests.conftest import LISTINGS, NOW

UTC = timezone.utc
DAY = date(2025, 1, 10)
OUTAGE = (day_start(DAY) + timedelta(hours=6), day_start(DAY) + timedelta(hours=8))  # 24 candles
DELAYS = parse_delays("1h,24h,7d")


def ledger(store) -> list[tuple]:
    with store.engine().connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql('SELECT symbol, start, "end" FROM price_kline_gaps ORDER BY 2')]


def test_delays_parse_and_bad_ones_are_named():
    assert parse_delays("7d, 1h,24h,1h") == [timedelta(hours=1), timedelta(hours=24), timedelta(days=7)]
    assert parse_delays(None) == DELAYS
    with pytest.raises(ValueError, match=r"KLINE_OUTAGE_REPAIR_AFTER: '5x' is not a delay: .* e\.g\. 1h,24h,7d"):
        parse_delays("1h,5x")


def test_each_delay_triggers_one_re_fetch_and_then_the_outage_is_left_alone(kline_store):
    seen = NOW
    with kline_store.engine().begin() as conn:
        conn.exec_driver_sql('INSERT INTO price_kline_gaps VALUES (%(s)s, %(a)s, %(b)s, %(t)s, %(t)s)',
                             {"s": "BTCUSDT", "a": OUTAGE[0], "b": OUTAGE[1], "t": seen})

    def due(at: datetime) -> list[date]:
        return due_repairs(kline_store, symbols=["BTCUSDT"], now=at, delays=DELAYS).get("BTCUSDT", [])

    def attempt(at: datetime) -> None:
        kline_store.execute("record_repairs.sql", {"symbol": "BTCUSDT", "at": at, "run_id": None, "days": [DAY],
                                                   "before": [24], "recovered": [0], "still_out": [24]})

    assert due(seen + timedelta(minutes=59)) == []
    assert due(seen + timedelta(hours=1)) == [DAY]
    attempt(seen + timedelta(hours=1))
    assert due(seen + timedelta(hours=23)) == []
    assert due(seen + timedelta(hours=30)) == [DAY]  # the 24h milestone
    attempt(seen + timedelta(hours=30))
    assert due(seen + timedelta(days=6)) == []
    # Down for a while: the 7d milestone is caught up once.
    assert due(seen + timedelta(days=9)) == [DAY]
    attempt(seen + timedelta(days=9))
    assert due(seen + timedelta(days=60)) == []  # every delay tried: the exchange keeps its outage
    assert due_repairs(kline_store, symbols=["ETHUSDT"], now=seen + timedelta(days=9), delays=DELAYS) == {}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT"])
        yield inst


def test_an_outage_that_heals_is_repaired_on_schedule_through_dagster(instance, kline_store, bybit, simulator,
                                                                      monkeypatch, tmp_path, capsys, database_url):
    now = {"t": NOW}
    monkeypatch.setattr(clock, "utcnow", lambda: now["t"])

    def at(delta: timedelta) -> None:  # move both clocks
        now["t"] = NOW + delta
        simulator.set_now(to_ms(now["t"]))

    heals = NOW + timedelta(hours=5)
    simulator.add_outage("BTCUSDT", to_ms(OUTAGE[0]), to_ms(OUTAGE[1]), heals_at_ms=to_ms(heals))
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=[DAY], now=NOW)
    assert ledger(kline_store) == [("BTCUSDT", *OUTAGE)]
    resources = {"bybit": bybit, "kline_store": kline_store}

    def tick() -> dg.RunRequest | dg.SkipReason:
        with dg.build_schedule_context(instance=instance, resources={"kline_store": kline_store},
                                       scheduled_execution_time=now["t"]) as context:
            return outage_repair(context)

    def run(request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        return outage_repair_job.execute_in_process(instance=instance, resources=resources,
                                                    run_config=request.run_config, tags=request.tags)

    at(timedelta(minutes=30))
    assert isinstance(tick(), dg.SkipReason)
    at(timedelta(hours=1))  # first re-fetch: the exchange still has nothing there
    first = run(tick())
    assert first.success and first.output_for_node("repair_outages") == {"BTCUSDT": 0}
    assert first.asset_materializations_for_node("repair_outages") == []  # nothing changed
    assert ledger(kline_store) == [("BTCUSDT", *OUTAGE)]
    at(timedelta(hours=2))
    skipped = tick()
    assert isinstance(skipped, dg.SkipReason) and "after 1h, 24h, 7d" in skipped.skip_message

    at(timedelta(hours=24))  # healed since hour 5: the second re-fetch recovers the outage
    second = run(tick())
    assert second.success and second.output_for_node("repair_outages") == {"BTCUSDT": 24}
    [materialization] = second.asset_materializations_for_node("repair_outages")
    assert materialization.partition == "2025-01-10|BTCUSDT"
    assert materialization.metadata["recovered"].value == 24 and materialization.metadata["still_out"].value == 0
    assert ledger(kline_store) == []
    truth = BybitSimulator(instruments=LISTINGS).candles("BTCUSDT", to_ms(day_start(DAY)), to_ms(day_start(DAY) + timedelta(days=1)))
    with kline_store.engine().connect() as conn:
        stored = [[str(to_ms(r[0])), *map(str, r[1:])] for r in conn.exec_driver_sql(
            "SELECT timestamp, open, high, low, close, volume, turnover FROM price_klines WHERE symbol = 'BTCUSDT' "
            "ORDER BY timestamp")]
    assert stored == truth
    checks = {e.check_name: e.passed for e in second.get_asset_check_evaluations()}
    assert checks == {"no_missing_candles": True, "valid_ohlcv": True}
    # The rollups follow: the sensor sees the new raw version of that day.
    requests, _ = evaluate_tick(instance, RollupCursor())
    assert requested_partitions(requests) == [("2025-01-10|BTCUSDT", "2025-01-10|BTCUSDT")]
    at(timedelta(days=8))
    assert isinstance(tick(), dg.SkipReason)  # the ledger is empty: nothing left to repair

    # The history, in `gaps` and in the doctor.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("KLINE_DATABASE_URL", database_url)
    assert main(["gaps", "--symbol", "BTCUSDT", "--start", "2025-01-10T00:00:00Z", "--end", "2025-01-11T00:00:00Z",
                 "--json"]) == 0
    history = json.loads(capsys.readouterr().out)["repairs"]
    assert [(h["day"], h["outage_before"], h["recovered"], h["still_out"]) for h in history] == [
        ("2025-01-10", 24, 0, 24), ("2025-01-10", 24, 24, 0)]
    assert main(["gaps", "--symbol", "BTCUSDT", "--start", "2025-01-10T00:00:00Z", "--end", "2025-01-11T00:00:00Z"]) == 0
    assert "outage repair 2025-03-02 12:02 of 2025-01-10: 24 of 24 outage candles recovered, 0 still out" in \
        capsys.readouterr().out
    [finding] = repairs(kline_store, "BTCUSDT", day_start(DAY), NOW + timedelta(days=2))
    assert finding.state == OK and "2 outage re-fetch(es) of 1 day(s), 24 candle(s) recovered, 0 still out" in \
        finding.detail
