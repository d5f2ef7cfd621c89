"""The real exchange's edges, each through the HTTP simulator and PostgreSQL: a delisted or
settling symbol, closed-ness by the exchange's clock, the spot listing probe, retCodes 5004 and
10018 (and 10001 / 403 unchanged)."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from kline_pipeline.bybit import (
    PROBE_START_MS,
    BybitError,
    BybitIpBanError,
    BybitRejectedError,
)
from kline_pipeline.checks import Facts
from kline_pipeline.checks.rules import candles_fresh, no_missing_candles
from kline_pipeline.gaps import DELISTED, MISSING, NOT_CLOSED, OUTAGE, gap_report
from kline_pipeline.ingest import ingest_days
from kline_pipeline.live import DEFAULT_LOOKBACK_MINUTES, refresh_symbol
from kline_pipeline.models import to_ms
from kline_pipeline.partitions import symbols_partitions
from kline_pipeline.schedules import live_refresh_job
from kline_pipeline.symbols import add_symbols
from kline_pipeline_tests.conftest import NOW
from kline_pipeline_tests.helpers import stored, truth

UTC = timezone.utc
LISTED = datetime(2024, 12, 1, tzinfo=UTC)
DELISTED_AT = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)  # LUNAUSDT stops trading at noon
DAY = timedelta(days=1)
FIVE = timedelta(minutes=5)
DAY_MS = 86_400_000


@pytest.fixture
def luna(simulator):
    """LUNAUSDT: listed 1 Dec 2024, delisted (Closed) at noon on 10 Jan 2025."""
    simulator.add_instrument("LUNAUSDT", to_ms(LISTED))
    simulator.delist("LUNAUSDT", to_ms(DELISTED_AT))
    return simulator


# ------------------------------------------------------------------ 1. delisted and settling symbols
def test_a_delisted_symbol_is_added_and_backfilled_across_its_delisting(luna, bybit, kline_store):
    with dg.instance_for_test() as instance:
        assert add_symbols(instance, bybit, ["LUNAUSDT"]) == ["LUNAUSDT"]  # Closed, found by its status
    days = [DELISTED_AT.date() + timedelta(days=d) for d in (-1, 0, 1, 2)]
    report = ingest_days(bybit=bybit, store=kline_store, symbol="LUNAUSDT", days=days, now=NOW)
    listing = kline_store.listing("LUNAUSDT")
    assert (listing.status, listing.launch_time, listing.delivery_time) == ("Closed", LISTED, DELISTED_AT)
    first = datetime.combine(days[0], datetime.min.time(), UTC)
    assert stored(kline_store, "LUNAUSDT", first, first + 4 * DAY) == truth(luna, "LUNAUSDT", first, first + 4 * DAY)
    rows = {d.day: (d.rows, d.empty_reason) for d in report.days}
    assert rows[days[0]] == (288, None) and rows[days[1]] == (144, None)
    assert all(rows[d][0] == 0 and rows[d][1].startswith("delisted: after the delisting (2025-01-10T12:00:00+00:00")
               for d in days[2:])
    assert report.days_after_delisting == 2
    # Days after it were not requested: the windows end at the delisting.
    assert max(int(r.params["end"]) for r in luna.kline_requests()) < to_ms(DELISTED_AT)
    # No exchange outage is recorded for the afternoon; the gap report calls it delisted.
    gaps = gap_report(kline_store, symbol="LUNAUSDT", start=first, end=first + 4 * DAY, now=NOW)
    assert gaps.totals[MISSING] == 0 and gaps.totals[OUTAGE] == 0 and gaps.totals[DELISTED] == 144 + 2 * 288
    keys = [f"{d.isoformat()}|LUNAUSDT" for d in days]
    facts = Facts(kline_store, keys, NOW)
    for key in keys:
        outcome = no_missing_candles(facts, key)
        assert outcome.passed, (key, outcome)
    assert no_missing_candles(facts, keys[1]).metadata["delisted"] == 144
    today = f"{NOW.date().isoformat()}|LUNAUSDT"
    fresh = candles_fresh(Facts(kline_store, [today], NOW), today)
    assert fresh.passed and fresh.metadata["delisted"] == DELISTED_AT.isoformat()


def test_a_symbol_that_starts_settling_is_followed_to_its_delivery_then_skipped_by_the_live_refresh(
        simulator, bybit, kline_store, ticking):
    tick = ticking
    delivery = NOW + timedelta(hours=2)  # announced: it settles, then stops trading at 14:02:30
    simulator.add_instrument("LUNAUSDT", to_ms(LISTED))
    simulator.delist("LUNAUSDT", to_ms(delivery))
    tick(NOW)  # Delivering: still trading, its delivery time recorded at the first tick
    assert kline_store.listing("LUNAUSDT").status == "Delivering"
    assert kline_store.listing("LUNAUSDT").delivery_time == delivery
    simulator.reset_requests()
    tick(NOW + timedelta(hours=3))
    assert kline_store.last_candle("LUNAUSDT") == delivery.replace(second=0) - timedelta(minutes=2)  # 14:00
    # Its delivery time has come without a Closed status: the instrument is read once more (it may
    # have been postponed) and now confirms it; the one kline request ends at the delivery.
    assert kline_store.listing("LUNAUSDT").status == "Closed"
    assert [r.path for r in simulator.requests].count("/v5/market/instruments-info") >= 1
    [window] = simulator.kline_requests()
    assert int(window.params["end"]) < to_ms(delivery)
    assert gap_report(kline_store, symbol="LUNAUSDT", start=NOW, end=NOW + timedelta(hours=3),
                      now=NOW + timedelta(hours=3)).totals[OUTAGE] == 0
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(symbols_partitions.name, ["LUNAUSDT", "BTCUSDT"])
        simulator.reset_requests()
        job = dg.Definitions(jobs=[live_refresh_job], resources={"bybit": bybit, "kline_store": kline_store})
        result = job.resolve_job_def("live_refresh_job").execute_in_process(instance=instance)
        assert result.success
        assert {r.params.get("symbol") for r in simulator.requests} == {"BTCUSDT"}  # LUNAUSDT skipped
        fresh = {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == "candles_fresh"}
        luna_today = fresh[f"{(NOW + timedelta(hours=3)).date().isoformat()}|LUNAUSDT"]
        assert luna_today.passed and luna_today.metadata["delisted"].value == delivery.isoformat()


@pytest.fixture
def ticking(simulator, bybit, kline_store, monkeypatch):
    """tick(at): one live refresh of LUNAUSDT at `at` (a 1-hour window), the clocks moved there."""
    from kline_pipeline import clock

    moment = {"now": NOW}
    monkeypatch.setattr(clock, "utcnow", lambda: moment["now"])

    def tick(at: datetime):
        moment["now"] = at
        simulator.set_now(to_ms(at))
        return refresh_symbol(bybit=bybit, store=kline_store, symbol="LUNAUSDT", now=at,
                              lookbacks=DEFAULT_LOOKBACK_MINUTES, refetch=timedelta(hours=1))
    return tick


def test_a_postponed_delisting_is_read_again_and_no_candle_after_the_old_time_is_lost(
        simulator, bybit, kline_store, ticking):
    delivery, postponed = NOW + timedelta(hours=2), NOW + timedelta(hours=6)
    simulator.add_instrument("LUNAUSDT", to_ms(LISTED))
    simulator.delist("LUNAUSDT", to_ms(delivery))
    ticking(NOW)
    assert kline_store.listing("LUNAUSDT").delivery_time == delivery
    simulator.delist("LUNAUSDT", to_ms(postponed))  # announced, then postponed by four hours
    at = NOW + timedelta(hours=3)
    assert kline_store.closed_symbols(["LUNAUSDT"], at) == set()  # not Closed: the live job keeps it
    ticking(at)
    listing = kline_store.listing("LUNAUSDT")
    assert (listing.status, listing.delivery_time) == ("Delivering", postponed)
    window = (at - timedelta(hours=1)).replace(second=0, minute=0), at.replace(second=0, minute=0)
    assert stored(kline_store, "LUNAUSDT", *window) == truth(simulator, "LUNAUSDT", *window)
    assert len(stored(kline_store, "LUNAUSDT", delivery, at)) == 11  # 14:05..14:55, after the old time
    report = gap_report(kline_store, symbol="LUNAUSDT", start=window[0], end=window[1], now=at)
    assert report.totals[DELISTED] == 0 and report.totals[MISSING] == 0
    simulator.reset_requests()
    ticking(at + timedelta(minutes=5))  # re-read once: the next tick trusts the new time again
    assert [r.path for r in simulator.requests] == ["/v5/market/kline"]


def test_a_cancelled_delisting_is_noticed_within_a_day_and_the_symbol_refreshed_on(
        simulator, bybit, kline_store, ticking):
    simulator.add_instrument("LUNAUSDT", to_ms(LISTED))
    simulator.delist("LUNAUSDT", to_ms(NOW + 3 * DAY))
    ticking(NOW)
    assert kline_store.listing("LUNAUSDT").delivery_time == NOW + 3 * DAY
    simulator.cancel_delisting("LUNAUSDT")
    simulator.reset_requests()
    ticking(NOW + timedelta(hours=1))  # checked an hour ago: trusted, no instrument request
    assert [r.path for r in simulator.requests] == ["/v5/market/kline"]
    ticking(NOW + DAY + timedelta(hours=1))  # checked over a day ago: read again
    listing = kline_store.listing("LUNAUSDT")
    assert (listing.status, listing.delivery_time) == ("Trading", None)
    simulator.reset_requests()
    later = NOW + 4 * DAY
    ticking(later)  # past the old delivery time: fetched as usual, nothing clipped
    assert kline_store.last_candle("LUNAUSDT") == later.replace(minute=0, second=0) - FIVE
    assert [r.path for r in simulator.requests] == ["/v5/market/kline"]


def test_a_delisting_found_by_the_live_reread_drops_the_outage_recorded_after_it(
        simulator, bybit, kline_store, ticking):
    simulator.add_instrument("LUNAUSDT", to_ms(LISTED))
    ticking(NOW)  # trading, no delisting announced
    delivery = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    simulator.delist("LUNAUSDT", to_ms(delivery))  # stops without notice
    at = NOW + timedelta(hours=1)
    ticking(at)  # the newest candles do not come: the re-read finds it Closed
    assert kline_store.listing("LUNAUSDT").status == "Closed"
    with kline_store.engine().connect() as conn:
        rows = conn.exec_driver_sql("SELECT start, \"end\" FROM price_kline_gaps WHERE symbol = 'LUNAUSDT'").all()
    assert [r for r in rows if r[1] > delivery] == []
    report = gap_report(kline_store, symbol="LUNAUSDT", start=NOW, end=at, now=at)
    assert report.totals[OUTAGE] == 0 and report.totals[DELISTED] == 7  # 12:30..13:00


def test_a_failed_reread_after_a_sweep_still_marks_the_changed_candles_pending(
        simulator, bybit, kline_store, ticking):
    simulator.add_instrument("LUNAUSDT", to_ms(LISTED))
    ticking(NOW)
    kline_store.mark_live_recorded(symbols=["LUNAUSDT"], through=NOW.date() - DAY)  # that tick is done
    assert kline_store.live_states(["LUNAUSDT"])["LUNAUSDT"].pending_since is None
    at = NOW + timedelta(minutes=30)
    simulator.add_outage("LUNAUSDT", to_ms(at) - 10 * 60_000, to_ms(at) + DAY_MS)  # the newest do not come
    # The kline request is answered; the instrument re-read is refused (not retried).
    simulator.inject("ok", "10001")
    with pytest.raises(BybitRejectedError):
        ticking(at)
    state = kline_store.live_states(["LUNAUSDT"])["LUNAUSDT"]
    # The candles this tick wrote (12:00..12:20, new since 12:02:30) stay pending for the next tick's rollups.
    assert state.pending_since == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert kline_store.last_candle("LUNAUSDT") == datetime(2025, 3, 1, 12, 20, tzinfo=UTC)


def test_doctor_calls_a_delisted_symbol_healthy_and_says_delisted(luna, bybit, kline_store):
    from kline_pipeline.health import OK, symbols as symbol_findings

    ingest_days(bybit=bybit, store=kline_store, symbol="LUNAUSDT", days=[DELISTED_AT.date()], now=NOW)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(symbols_partitions.name, ["LUNAUSDT"])
        findings = {f.section: f for f in symbol_findings(instance, kline_store, NOW)}
    assert findings["candles"].state == OK
    assert findings["candles"].detail.startswith("delisted at 2025-01-10T12:00:00+00:00, not refreshed any more")
    assert findings["gaps"].state == OK  # the weeks since the delisting are not missing


def test_a_prelaunch_symbol_is_added_and_its_days_before_launch_are_empty(simulator, bybit, kline_store):
    launch = NOW + timedelta(days=2)
    simulator.add_instrument("SOONUSDT", to_ms(launch))
    with dg.instance_for_test() as instance:
        assert add_symbols(instance, bybit, ["SOONUSDT"]) == ["SOONUSDT"]
    report = ingest_days(bybit=bybit, store=kline_store, symbol="SOONUSDT", days=[NOW.date()], now=NOW)
    assert kline_store.listing("SOONUSDT").status == "PreLaunch" and report.days_before_listing == 1
    assert report.days[0].empty_reason == f"before the listing ({launch.isoformat()})"
    assert simulator.kline_requests() == []


# ------------------------------------------------------------------ 3. closed by the exchange's clock
def test_a_local_clock_ahead_of_the_exchange_never_stores_the_open_candle(simulator, bybit, kline_store):
    local = datetime(2025, 3, 1, 12, 5, 1, tzinfo=UTC)  # ours: 12:05:01, the 12:00 candle looks closed
    simulator.set_now(to_ms(local))
    simulator.set_clock_skew(-2000)  # Bybit's: 12:04:59, the 12:00 candle is still open
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=[local.date()], now=local)
    noon = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert kline_store.last_candle("BTCUSDT") == noon - FIVE
    report = gap_report(kline_store, symbol="BTCUSDT", start=noon - DAY / 2, end=noon + FIVE, now=local)
    # The candle still open by the exchange's clock is neither an outage nor missing.
    assert (report.totals[OUTAGE], report.totals[MISSING], report.totals[NOT_CLOSED]) == (0, 0, 1)
    today = f"{local.date().isoformat()}|BTCUSDT"
    outcome = no_missing_candles(Facts(kline_store, [today], local), today)
    assert outcome.passed, outcome
    later = local + timedelta(minutes=5)
    simulator.set_now(to_ms(later))
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=[local.date()], now=later)
    assert stored(kline_store, "BTCUSDT", noon, noon + FIVE) == truth(simulator, "BTCUSDT", noon, noon + FIVE)


@pytest.mark.parametrize("omit, time_requests", [(("body",), 0), (("body", "header"), 1)])
def test_a_reply_without_time_is_judged_by_another_exchange_clock_not_the_local_one(
        simulator, bybit, kline_store, omit, time_requests):
    local = datetime(2025, 3, 1, 12, 5, 1, tzinfo=UTC)  # ours: 12:05:01, the 12:00 candle looks closed
    simulator.set_now(to_ms(local))
    simulator.set_clock_skew(-2000)  # Bybit's: 12:04:59, the 12:00 candle is still open
    simulator.set_omit_time(*omit)  # no `time` in the body (and no Timenow header)
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=[local.date()], now=local)
    noon = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert kline_store.last_candle("BTCUSDT") == noon - FIVE
    # The Timenow header serves; without it one /v5/market/time call for the whole sweep.
    assert [r.path for r in simulator.requests].count("/v5/market/time") == time_requests
    assert len(simulator.kline_requests()) == 1


def test_with_no_exchange_time_at_all_the_newest_candle_is_treated_as_open(simulator, bybit, kline_store):
    local = datetime(2025, 3, 1, 12, 5, 1, tzinfo=UTC)  # both clocks agree: the 12:00 candle is closed
    simulator.set_now(to_ms(local))
    simulator.set_omit_time("body", "header", "endpoint")
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=[local.date()], now=local)
    noon = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert kline_store.last_candle("BTCUSDT") == noon - FIVE  # conservative: not stored yet
    assert stored(kline_store, "BTCUSDT", noon - DAY / 2, noon) == truth(simulator, "BTCUSDT", noon - DAY / 2, noon)
    report = gap_report(kline_store, symbol="BTCUSDT", start=noon - DAY / 2, end=noon + FIVE, now=local)
    assert report.totals[OUTAGE] == 0
    simulator.set_omit_time()
    later = local + timedelta(minutes=5)
    simulator.set_now(to_ms(later))
    ingest_days(bybit=bybit, store=kline_store, symbol="BTCUSDT", days=[local.date()], now=later)
    assert stored(kline_store, "BTCUSDT", noon, noon + FIVE) == truth(simulator, "BTCUSDT", noon, noon + FIVE)


# ------------------------------------------------------------------ 4. the spot listing probe
def test_the_spot_listing_probe_sends_an_explicit_early_start(simulator, bybit):
    simulator.add_instrument("spot:NEWSPOT", to_ms(datetime(2025, 1, 15, 8, 0, tzinfo=UTC)))
    instrument = bybit.get_instrument(symbol="NEWSPOT", category="spot")
    assert instrument.launch_time == datetime(2025, 1, 15, 8, 0, tzinfo=UTC)  # not "now"
    [probe] = simulator.kline_requests()
    assert probe.params["start"] == str(PROBE_START_MS) and probe.params["category"] == "spot"


def test_a_probe_answered_with_the_open_candle_is_refused(simulator, bybit):
    simulator.add_instrument("spot:JUSTNOW", to_ms(NOW) - 60_000)  # its first candle is still open
    with pytest.raises(BybitError, match="JUSTNOW.*still-open candle at 2025-03-01T12:00:00"):
        bybit.get_instrument(symbol="JUSTNOW", category="spot")


# ------------------------------------------------------------------ 5. error codes
def test_a_server_timeout_5004_is_retried(simulator, bybit):
    simulator.inject("5004", "5004")
    day = datetime(2025, 1, 1, tzinfo=UTC)
    assert len(bybit.fetch_klines(symbol="BTCUSDT", start=day, end=day + DAY, now=NOW)) == 288
    assert bybit.retried_faults() == {"retCode 5004": 2}


@pytest.mark.parametrize("skew_ms", [0, 3_600_000])
def test_the_ip_rate_limit_10018_waits_until_its_reset_header(simulator, bybit, skew_ms):
    # Backoff here is 10-50 ms: only the reset header (1 s ahead on the exchange's clock, which may
    # be an hour off ours) explains a wait of a second.
    simulator.set_clock_skew(skew_ms)
    simulator.inject("10018")
    day = datetime(2025, 1, 1, tzinfo=UTC)
    assert len(bybit.fetch_klines(symbol="BTCUSDT", start=day, end=day + DAY, now=NOW)) == 288
    refused, answered = simulator.kline_requests()
    assert (refused.fault, answered.fault) == ("10018", None)
    assert 0.95 <= answered.at - refused.at < 5
    assert bybit.retried_faults() == {"retCode 10018": 1}


def test_the_ip_rate_limit_10018_holds_every_thread_of_the_process(simulator, bybit):
    import threading
    import time

    from kline_pipeline.bybit import BybitClient

    simulator.inject("10018")  # the first request is refused; the reset is 1 s ahead
    day = datetime(2025, 1, 1, tzinfo=UTC)
    first = threading.Thread(target=bybit.fetch_klines,
                             kwargs={"symbol": "BTCUSDT", "start": day, "end": day + DAY, "now": NOW})
    first.start()
    deadline = time.monotonic() + 5
    while not simulator.kline_requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the refused thread has paused the shared limiter by now
    other = BybitClient(**bybit.model_dump())  # another thread's client, same process-wide limiter
    assert len(other.fetch_klines(symbol="ETHUSDT", start=day, end=day + DAY, now=NOW)) == 288
    first.join(5)
    refused = simulator.kline_requests()[0]
    [eth] = [r for r in simulator.kline_requests() if r.params["symbol"] == "ETHUSDT"]
    assert refused.fault == "10018" and refused.params["symbol"] == "BTCUSDT"
    assert eth.at - refused.at >= 0.95  # it waited for the IP's reset too, not only the refused thread


def test_10001_stays_permanent_and_403_stops_at_once(simulator, bybit):
    day = datetime(2025, 1, 1, tzinfo=UTC)
    simulator.inject("10001")
    with pytest.raises(BybitRejectedError, match="retCode 10001"):
        bybit.fetch_klines(symbol="BTCUSDT", start=day, end=day + DAY, now=NOW)
    simulator.inject("403")
    with pytest.raises(BybitIpBanError):
        bybit.fetch_klines(symbol="BTCUSDT", start=day, end=day + DAY, now=NOW)
    assert [r.fault for r in simulator.kline_requests()] == ["10001", "403"]
