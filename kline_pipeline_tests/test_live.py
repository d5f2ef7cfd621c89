"""Live refresh: ticks with a moving clock, a bounded window, the schedule's run request, freshness."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from kline_pipeline import clock
from kline_pipeline.checks import EVALUATORS, Facts
from kline_pipeline.checks.rules import candles_fresh, no_missing_candles
from kline_pipeline.gaps import gap_report
from kline_pipeline.live import DEFAULT_LOOKBACK_MINUTES, refresh_symbol, validate_lookbacks
from kline_pipeline.models import to_ms
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.schedules import live_refresh, live_refresh_job
from kline_pipeline.sensors import ROLLUP_KEYS, RollupCursor, evaluate_tick

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
    assert second.changed_days == [T0.date()]  # nothing earlier changed


def test_a_six_hour_pause_is_caught_up_in_one_tick(bybit, store, simulator, moving):
    tick(bybit, store, T0)
    later = tick(bybit, store, moving.set(T0 + timedelta(hours=6)))
    assert later.ingest.requests == 1 and later.ingest.changed == 72
    first = T0.replace(minute=0, second=0) - TWO_DAYS
    assert store.summary(symbol="BTCUSDT", start=first, end=T0 + timedelta(hours=6)).rows == 576 + 72


def test_a_pause_longer_than_the_window_leaves_the_older_hole_to_a_backfill(bybit, store, simulator, moving):
    """A tick re-fetches its window only (default: the longest lookback, two days); what is older
    is never fetched silently: the gap report shows it as missing."""
    tick(bybit, store, T0)
    simulator.reset_requests()
    later = tick(bybit, store, moving.set(T0 + timedelta(days=3)))
    noon = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # the first tick stored candles up to 11:55
    assert later.fetched_from == noon + timedelta(days=1)
    assert int(simulator.kline_requests()[0].params["start"]) == to_ms(later.fetched_from)
    hole = gap_report(store, symbol="BTCUSDT", start=noon - timedelta(hours=1), end=later.fetched_from, now=moving.now)
    assert hole.missing == 288 and [(s.start, s.end, s.cause) for s in hole.spans] == [
        (noon, later.fetched_from, "missing")]


def test_the_day_boundary_finalises_yesterday(bybit, store, simulator, moving):
    tick(bybit, store, moving.set(datetime(2025, 3, 1, 23, 57, tzinfo=UTC)))
    boundary = tick(bybit, store, moving.set(datetime(2025, 3, 2, 0, 0, 20, tzinfo=UTC)))
    assert store.last_candle("BTCUSDT") == datetime(2025, 3, 1, 23, 55, tzinfo=UTC)
    assert boundary.changed_days == [datetime(2025, 3, 1).date()]
    complete = no_missing_candles(Facts(store, ["2025-03-01|BTCUSDT"], moving.now), "2025-03-01|BTCUSDT")
    assert complete.passed and complete.metadata["expected"] == 288


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
    assert again.changed_days == [T0.date()]


def test_freshness_fails_when_the_newest_candle_is_stale_or_the_tick_failed(bybit, store, simulator, moving):
    tick(bybit, store, T0)
    key = "2025-03-01|BTCUSDT"

    def fresh(at: datetime):
        return candles_fresh(Facts(store, [key], at), key)

    assert fresh(T0).passed and fresh(T0).metadata["age_minutes"] == 2.5
    stale = fresh(T0 + timedelta(minutes=30))
    assert stale.state == "WARN" and stale.metadata["age_minutes"] == 32.5 and stale.metadata["limit_minutes"] == 15
    assert fresh(T0 + timedelta(hours=2)).state == "ERROR"  # stale for more than an hour
    old = "2025-02-27|BTCUSDT"  # not the latest day
    assert candles_fresh(Facts(store, [old], T0 + timedelta(minutes=30)), old).passed
    # A failed tick fails freshness at once, with its error, even while the candles are young.
    store.record_live_tick(symbol="BTCUSDT", at=T0, error="BybitUnavailableError: HTTP 502")
    failed = fresh(T0)
    assert failed.state == "WARN" and failed.metadata["last_live_error"].endswith("BybitUnavailableError: HTTP 502")
    store.record_live_tick(symbol="BTCUSDT", at=T0 + timedelta(minutes=5))
    assert fresh(T0 + timedelta(minutes=5)).passed


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


def run_job(bybit, store, instance) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(jobs=[live_refresh_job], resources={"bybit": bybit, "kline_store": store}).resolve_job_def(
        "live_refresh_job")
    return job.execute_in_process(instance=instance, raise_on_error=False)


def recorded(result) -> tuple[set, set]:
    """(asset, partition) materializations and (check, partition, outcome) results a run recorded."""
    mats = {(m.asset_key.path[-1], m.partition) for m in result.asset_materializations_for_node("refresh_latest_candles")}
    checks = {(e.asset_key.path[-1], e.check_name, e.partition, e.passed) for e in result.get_asset_check_evaluations()}
    return mats, checks


def test_one_run_refreshes_all_symbols_and_records_only_what_changed(instance, bybit, store, simulator, moving):
    first = run_job(bybit, store, instance)  # the first tick loads two days: 27 Feb 12:00 .. 1 Mar 12:00
    assert first.success
    mats, checks = recorded(first)
    days = ["2025-02-27", "2025-02-28", "2025-03-01"]
    assert mats == {(a, f"{d}|{s}") for a in ["price_klines_5m", *(r.path[-1] for r in ROLLUP_KEYS)]
                    for d in days for s in ("BTCUSDT", "ETHUSDT")}
    assert len(checks) == len(EVALUATORS) * 3 * 2  # every check of every recorded day
    # Only 27 February fails: its morning precedes the first tick's window and was never fetched.
    assert {(c, p) for _, c, p, ok in checks if not ok} == {
        (c, f"2025-02-27|{s}") for c in ("no_missing_candles", "exact_and_complete") for s in ("BTCUSDT", "ETHUSDT")}
    # The rollups were refreshed in the same run: the rollup sensor asks for nothing.
    requests, cursor = evaluate_tick(instance, RollupCursor())
    assert requests == []

    # A quiet tick: one window per symbol, and nothing to record (today has its materialization,
    # freshness did not change).
    simulator.reset_requests()
    moving.set(T0 + timedelta(minutes=5))
    quiet = run_job(bybit, store, instance)
    assert quiet.success
    assert sorted(r.params["symbol"] for r in simulator.kline_requests()) == ["BTCUSDT", "ETHUSDT"]
    assert recorded(quiet) == (set(), set())
    assert store.last_candle("ETHUSDT") == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert evaluate_tick(instance, cursor)[0] == []


def test_one_failing_symbol_fails_its_freshness_and_not_the_others(instance, bybit, store, simulator, moving):
    run_job(bybit, store, instance)
    # A symbol the exchange does not know (say, added in the UI by mistake) and a malformed one.
    instance.add_dynamic_partitions(symbols_partitions.name, ["GONEUSDT", "btc|usdt"])
    moving.set(T0 + timedelta(minutes=5))
    result = run_job(bybit, store, instance)
    assert not result.success  # the run shows the failure, after every other symbol was refreshed
    assert store.last_candle("BTCUSDT") == store.last_candle("ETHUSDT") == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    failure = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "failed for 2 of 4 symbol(s): GONEUSDT, btc|usdt" in failure
    fresh = {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == "candles_fresh"}
    assert set(fresh) == {"2025-03-01|GONEUSDT"}  # recorded because it changed; the others did not
    assert fresh["2025-03-01|GONEUSDT"].severity == dg.AssetCheckSeverity.ERROR  # no candle at all
    assert "not listed on Bybit" in fresh["2025-03-01|GONEUSDT"].metadata["last_live_error"].value
    # Later, BTCUSDT starts failing too: its freshness turns WARN (its candles are young) with the error.
    simulator.inject(*["502"] * 40)
    moving.set(T0 + timedelta(minutes=10))
    later = run_job(bybit, store, instance)
    fresh = {e.partition: e for e in later.get_asset_check_evaluations() if e.check_name == "candles_fresh"}
    assert "2025-03-01|BTCUSDT" in fresh and fresh["2025-03-01|BTCUSDT"].severity == dg.AssetCheckSeverity.WARN
    assert "HTTP 502" in fresh["2025-03-01|BTCUSDT"].metadata["last_live_error"].value
