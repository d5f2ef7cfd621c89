"""Live refresh: ticks with a moving clock, the schedule's run request, freshness."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from kline_pipeline import clock
from kline_pipeline.checks import Facts, candles_fresh, check_evaluation, raw_checks
from kline_pipeline.live import DEFAULT_LOOKBACK_MINUTES, refresh_symbol, validate_lookbacks
from kline_pipeline.models import to_ms
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.schedules import live_refresh, live_refresh_job

UTC = timezone.utc
T0 = datetime(2025, 3, 1, 12, 2, 30, tzinfo=UTC)
TWO_DAYS = timedelta(minutes=max(DEFAULT_LOOKBACK_MINUTES.values()))


class MovingClock:
    """The pipeline's and the simulator's "now", moved together."""

    def __init__(self, simulator, monkeypatch) -> None:
        self.simulator = simulator
        monkeypatch.setattr(clock, "utcnow", lambda: self.now)
        self.set(T0)

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        self.simulator.set_now(to_ms(moment))
        return moment


@pytest.fixture
def moving(simulator, monkeypatch):
    return MovingClock(simulator, monkeypatch)


@pytest.fixture
def store(kline_store):
    return kline_store


def tick(bybit, store, now):
    return refresh_symbol(bybit=bybit, store=store, symbol="BTCUSDT", now=now, lookbacks=DEFAULT_LOOKBACK_MINUTES,
                          refetch=TWO_DAYS)


def test_consecutive_ticks_fetch_one_window_and_change_only_new_candles(bybit, store, simulator, moving):
    first = tick(bybit, store, T0)
    assert first.ingest.requests == 2  # the listing once, then one kline window
    assert first.ingest.changed == 576 and store.last_candle("BTCUSDT") == datetime(2025, 3, 1, 11, 55, tzinfo=UTC)
    second = tick(bybit, store, moving.set(T0 + timedelta(minutes=5)))
    assert second.ingest.requests == 1 and second.ingest.changed == 1
    assert store.last_candle("BTCUSDT") == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert second.raw_days == [T0.date()]  # nothing earlier changed


def test_a_six_hour_pause_is_caught_up_in_one_tick(bybit, store, simulator, moving):
    tick(bybit, store, T0)
    later = tick(bybit, store, moving.set(T0 + timedelta(hours=6)))
    assert later.ingest.requests == 1 and later.ingest.changed == 72
    first = T0.replace(minute=0, second=0) - TWO_DAYS
    assert store.summary(symbol="BTCUSDT", start=first, end=T0 + timedelta(hours=6)).rows == 576 + 72


def test_the_day_boundary_finalises_yesterday(bybit, store, simulator, moving):
    tick(bybit, store, moving.set(datetime(2025, 3, 1, 23, 57, tzinfo=UTC)))
    boundary = tick(bybit, store, moving.set(datetime(2025, 3, 2, 0, 0, 20, tzinfo=UTC)))
    assert store.last_candle("BTCUSDT") == datetime(2025, 3, 1, 23, 55, tzinfo=UTC)
    assert boundary.raw_days == [datetime(2025, 3, 1).date()]
    complete = check_evaluation(raw_checks.check_keys and next(k for k in raw_checks.check_keys
                                                              if k.name == "no_missing_candles"),
                                "2025-03-01|BTCUSDT", Facts(store, ["2025-03-01|BTCUSDT"], moving.now))
    assert complete.passed and complete.metadata["expected"].value == 288


def test_a_late_candle_changes_the_rollup_buckets_around_it(bybit, store, simulator, moving):
    late = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)  # older than the 15m lookback (30 minutes)
    simulator.add_outage("BTCUSDT", to_ms(late), to_ms(late + timedelta(minutes=5)))
    tick(bybit, store, T0)
    with store.engine().connect() as conn:
        before = conn.exec_driver_sql(
            "SELECT candle_count FROM price_klines_15m WHERE symbol = 'BTCUSDT' AND bucket = %(b)s", {"b": late}).scalar()
    assert before == 2
    simulator.clear_outages("BTCUSDT")  # the exchange serves it now
    again = tick(bybit, store, moving.set(T0 + timedelta(minutes=5)))
    assert again.ingest.first_changed == late
    with store.engine().connect() as conn:
        after = conn.exec_driver_sql(
            "SELECT candle_count FROM price_klines_15m WHERE symbol = 'BTCUSDT' AND bucket = %(b)s", {"b": late}).scalar()
        day = conn.exec_driver_sql(
            "SELECT candle_count FROM price_klines_1d WHERE symbol = 'BTCUSDT' AND bucket = '2025-03-01'").scalar()
    assert after == 3 and day == 145
    assert again.raw_days == [T0.date()]


def test_freshness_fails_when_the_newest_candle_is_stale(bybit, store, simulator, moving):
    tick(bybit, store, T0)
    fresh = candles_fresh(Facts(store, ["2025-03-01|BTCUSDT"], T0), "2025-03-01|BTCUSDT")
    assert fresh.passed and fresh.metadata["age_minutes"] == 2.5
    stale = candles_fresh(Facts(store, ["2025-03-01|BTCUSDT"], T0 + timedelta(minutes=30)), "2025-03-01|BTCUSDT")
    assert not stale.passed and stale.metadata["age_minutes"] == 32.5 and stale.metadata["limit_minutes"] == 15
    old = "2025-02-27|BTCUSDT"  # not the latest day
    assert candles_fresh(Facts(store, [old], T0 + timedelta(minutes=30)), old).passed


def test_bad_lookbacks_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"unknown rollup timeframe\(s\) \['2h'\].*allowed are 15m, 30m"):
        validate_lookbacks({"2h": 10})
    with pytest.raises(ValueError, match="positive minutes"):
        validate_lookbacks({"15m": 0})


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(symbols_partitions.name, ["BTCUSDT", "ETHUSDT"])
        yield inst


def test_the_schedule_requests_one_run_and_skips_while_one_is_active(instance):
    scheduled = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)
    request = live_refresh(dg.build_schedule_context(instance=instance, scheduled_execution_time=scheduled))
    assert isinstance(request, dg.RunRequest) and request.run_key == scheduled.isoformat()
    busy = instance.create_run_for_job(live_refresh_job, run_id=None)
    instance.handle_run_event(busy.run_id, dg.DagsterEvent(
        event_type_value="PIPELINE_START", job_name=live_refresh_job.name, message="started"))
    skipped = live_refresh(dg.build_schedule_context(instance=instance, scheduled_execution_time=scheduled))
    assert isinstance(skipped, dg.SkipReason) and busy.run_id in skipped.skip_message


def test_one_run_refreshes_all_symbols_and_records_partitions_and_checks(instance, bybit, store, simulator, moving):
    from kline_pipeline.definitions import defs

    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    job = dg.Definitions(jobs=[live_refresh_job], resources={"bybit": bybit, "kline_store": store}).resolve_job_def(
        "live_refresh_job")
    assert job.execute_in_process(instance=instance).success  # the first tick loads two days
    simulator.reset_requests()
    moving.set(T0 + timedelta(minutes=5))
    result = job.execute_in_process(instance=instance)
    assert result.success
    kline = simulator.kline_requests()
    assert sorted(r.params["symbol"] for r in kline) == ["BTCUSDT", "ETHUSDT"]  # one window each
    mats = {(m.asset_key.path[-1], m.partition) for m in result.asset_materializations_for_node("refresh_latest_candles")}
    assert ("price_klines_5m", "2025-03-01|BTCUSDT") in mats and ("price_klines_5m", "2025-03-01|ETHUSDT") in mats
    assert ("price_klines_1d", "2025-02-27|ETHUSDT") in mats  # the 1d lookback of two days reaches back
    assert ("price_klines_15m", "2025-02-28|BTCUSDT") not in mats  # 30 minutes do not
    assert ("price_klines_5m", "2025-02-28|BTCUSDT") not in mats  # nothing changed there
    checks = {(e.check_name, e.partition) for e in result.get_asset_check_evaluations()}
    assert ("no_missing_candles", "2025-03-01|BTCUSDT") in checks and ("candles_fresh", "2025-03-01|ETHUSDT") in checks
    assert ("exact_and_complete", "2025-03-01|BTCUSDT") in checks
    # Only 27 February fails: its morning precedes the first tick's two-day window and was never fetched.
    failed = {e.partition for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"2025-02-27|BTCUSDT", "2025-02-27|ETHUSDT"}
    # The rollups were refreshed in the same run: the automation sensor must not refresh them again.
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert after.total_requested == 0
