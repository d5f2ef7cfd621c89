"""Is it working? The facts behind `kline-pipeline doctor` and `GET /api/health`.

Reads, never writes: the Dagster instance (daemon heartbeats, the state and last tick of
`rollup_refresh_sensor`, `candles_fresh_sensor`, `cancel_sensor` and `live_refresh`, runs of the
last hour, pool slots) and the candle database (reachable; per symbol freshness as `candles_fresh` judges it and
the candles missing over the last week). Each fact becomes a Finding: ok, problem, or unknown (it could not be checked).
The report is healthy (exit 0) without problems or unknowns, "problems" (1) with any problem,
else "unknown" (2). Safe to run at any time and as often as wanted.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import dagster as dg

from kline_pipeline.checks import Facts, Outcome
from kline_pipeline.checks.rules import FRESHNESS_TOLERANCE, candles_fresh
from kline_pipeline.gaps import MISSING, OUTAGE, gap_report
from kline_pipeline.models import CANDLE_MS
from kline_pipeline.partitions import SYMBOLS_PARTITIONS_NAME, partition_key, valid_symbols
from kline_pipeline.store import KlineStore, SymbolSpan, redact_url

OK, PROBLEM, UNKNOWN = "ok", "problem", "unknown"
STATUSES = {OK: ("healthy", 0), PROBLEM: ("problems", 1), UNKNOWN: ("unknown", 2)}

HEARTBEAT_STALE = timedelta(seconds=150)
"""Daemons beat every 30 s; the UI waits 30 minutes before calling one dead, doctor 2.5 minutes."""
RUN_WINDOW = timedelta(hours=1)
GAP_WINDOW = timedelta(days=7)
"""Gaps are looked for over the last week (the live refresh re-fetches two days): cheap enough to poll."""
SLOT_LEAK_AFTER = timedelta(minutes=5)
"""A finished run's pool slots are freed by run monitoring within seconds (local: 15 s)."""
CANDLE = timedelta(milliseconds=CANDLE_MS)
START_DAEMON = "start `kline-pipeline dev`, or `dagster-daemon run -w workspace.yaml` on this DAGSTER_HOME"


@dataclass(frozen=True)
class Automation:
    name: str
    kind: str  # Dagster's InstigatorType value: SENSOR or SCHEDULE
    stale_after: timedelta
    """A running instigator without a tick for this long is stuck (sensor: 30 s loop; schedule: 5 min)."""


REPAIR_WINDOW = timedelta(days=7)
"""How far back the doctor reports outage repairs (the last scheduled re-fetch is 7 days after an outage)."""
AUTOMATIONS = (Automation("rollup_refresh_sensor", "SENSOR", timedelta(minutes=10)),
               Automation("candles_fresh_sensor", "SENSOR", timedelta(minutes=10)),
               Automation("cancel_sensor", "SENSOR", timedelta(minutes=10)),
               Automation("live_refresh", "SCHEDULE", timedelta(minutes=15)))


@dataclass(frozen=True)
class Finding:
    section: str
    name: str
    state: str
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.section} {self.name}".strip()


@dataclass(frozen=True)
class HealthReport:
    checked_at: datetime
    findings: tuple[Finding, ...]

    @property
    def status(self) -> str:
        states = {f.state for f in self.findings}
        return STATUSES[PROBLEM if PROBLEM in states else UNKNOWN if UNKNOWN in states else OK][0]

    @property
    def exit_code(self) -> int:
        return {name: code for name, code in STATUSES.values()}[self.status]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status, "exit_code": self.exit_code, "checked_at": self.checked_at.isoformat(),
            "problems": [f"{f.label}: {f.detail}" for f in self.findings if f.state == PROBLEM],
            "unknown": [f"{f.label}: {f.detail}" for f in self.findings if f.state == UNKNOWN],
            "findings": [{"section": f.section, "name": f.name, "state": f.state, "detail": f.detail, **f.facts}
                         for f in self.findings],
        }

    def text(self) -> str:
        width = max((len(f.label) for f in self.findings), default=0)
        lines = [f"kline-pipeline doctor, {self.checked_at:%Y-%m-%d %H:%M:%S} UTC"]
        lines += [f"  {f.label:<{width}}  {f.state:<7}  {f.detail}" for f in self.findings]
        problems = [f for f in self.findings if f.state == PROBLEM]
        unknown = [f for f in self.findings if f.state == UNKNOWN]
        if problems:
            lines.append(f"{len(problems)} problem(s): " + "; ".join(f.label for f in problems))
        elif unknown:
            lines.append("cannot tell: " + "; ".join(f.label for f in unknown))
        else:
            lines.append("healthy")
        return "\n".join(lines)


def ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h" if seconds < 172800 else f"{seconds // 86400} days"


def _guarded(section: str, gather: Callable[[], Iterable[Finding]]) -> list[Finding]:
    """The section's findings, or one `unknown` naming why it could not be checked."""
    try:
        return list(gather())
    except Exception as exc:  # doctor reports what it cannot check instead of failing
        reason = (str(exc).strip().splitlines() or [""])[0]
        return [Finding(section, "", UNKNOWN, f"could not check: {type(exc).__name__}: {reason}")]


def candle_database(store: KlineStore) -> Iterator[Finding]:
    url = redact_url(store.resolved_url())
    try:
        store.symbol_spans([])  # no symbol: only proves the database answers
    except ConnectionError as exc:  # already names the (redacted) URL and the reason
        yield Finding("candle database", "", PROBLEM, str(exc), {"url": url})
        return
    yield Finding("candle database", "", OK, f"reachable at {url}", {"url": url})


def daemons(instance: dg.DagsterInstance, now: datetime) -> Iterator[Finding]:
    """One finding for the daemons that are fine, one for those never seen, one for those gone
    quiet, and one per daemon reporting an error."""
    heartbeats = instance.get_daemon_heartbeats()
    seen: dict[str, timedelta] = {}
    never, stale = [], []
    for daemon in instance.get_required_daemon_types():
        beat = heartbeats.get(daemon)
        if beat is None:
            never.append(daemon)
            continue
        seen[daemon] = age = now - datetime.fromtimestamp(beat.timestamp, now.tzinfo)
        if age > HEARTBEAT_STALE:
            stale.append(daemon)
        elif beat.errors:
            yield Finding("daemon", daemon, PROBLEM, f"running, but reports: {beat.errors[0].message.strip()[:200]}",
                          {"heartbeat_age_seconds": round(age.total_seconds())})

    def facts(names: list[str]) -> dict[str, Any]:  # seconds since each one's last heartbeat
        return {"daemons": {n: (round(seen[n].total_seconds()) if n in seen else None) for n in names}}

    if never:
        yield Finding("daemon", "", PROBLEM, f"no heartbeat ever from {', '.join(never)}: no daemon has run on this "
                      f"instance; {START_DAEMON}", facts(never))
    if stale:
        yield Finding("daemon", "", PROBLEM, f"last heartbeat of {', '.join(stale)} {ago(min(seen[n] for n in stale))} "
                      f"ago: the daemon is not running; {START_DAEMON}", facts(stale))
    healthy = [n for n in seen if n not in stale and not heartbeats[n].errors]
    if healthy:
        newest, oldest = min(seen[n] for n in healthy), max(seen[n] for n in healthy)
        yield Finding("daemon", "", OK, f"{len(healthy)} running ({', '.join(healthy)}); last heartbeats "
                      f"{ago(newest)}..{ago(oldest)} ago", facts(healthy))


def automation(instance: dg.DagsterInstance, now: datetime) -> Iterator[Finding]:
    from kline_pipeline.cancel_sensor import cancel_sensor
    from kline_pipeline.freshness import candles_fresh_sensor
    from kline_pipeline.schedules import live_refresh
    from kline_pipeline.sensors import rollup_refresh_sensor

    defaults = {d.name: d.default_status.value
                for d in (rollup_refresh_sensor, candles_fresh_sensor, cancel_sensor, live_refresh)}
    states = instance.all_instigator_state()
    for auto in AUTOMATIONS:
        kind = auto.kind.lower()
        mine = [s for s in states if s.instigator_name == auto.name and s.instigator_type.value == auto.kind]
        stored = mine[0].status.value if mine else "DECLARED_IN_CODE"
        status = defaults[auto.name] if stored == "DECLARED_IN_CODE" else stored
        if status == "STOPPED":
            yield Finding(kind, auto.name, PROBLEM, f"stopped: start it in the UI (Automation -> {auto.name}) or with "
                          f"`dagster {kind} start {auto.name} -w workspace.yaml`", {"status": status})
            continue
        ticks = instance.get_ticks(mine[0].instigator_origin_id, mine[0].selector_id, limit=1) if mine else []
        if not ticks:
            yield Finding(kind, auto.name, OK, "running; no tick yet", {"status": status})
            continue
        tick = ticks[0]
        age = now - datetime.fromtimestamp(tick.timestamp, now.tzinfo)
        facts = {"status": status, "last_tick": tick.status.value,
                 "last_tick_at": datetime.fromtimestamp(tick.timestamp, now.tzinfo).isoformat(),
                 "last_tick_runs": list(tick.run_ids)}
        said = f"last tick {ago(age)} ago: {tick.status.value}"
        if tick.status.value == "FAILURE":
            message = (tick.error.message.strip().splitlines() or [""])[0] if tick.error else "no error recorded"
            yield Finding(kind, auto.name, PROBLEM, f"running; {said}: {message[:200]}", facts)
        elif age > auto.stale_after:
            yield Finding(kind, auto.name, PROBLEM, f"running, but {said}; is the daemon running?", facts)
        else:
            runs = f" ({len(tick.run_ids)} run(s) requested)" if tick.run_ids else ""
            yield Finding(kind, auto.name, OK, f"running; {said}{runs}", facts)


def symbols(instance: dg.DagsterInstance, store: KlineStore, now: datetime) -> Iterator[Finding]:
    names = valid_symbols(sorted(instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME)))
    if not names:
        yield Finding("symbols", "", UNKNOWN, "no symbol added yet, nothing to check: `kline-pipeline symbols add "
                      "BTCUSDT` (offline: see README, Offline mode)")
        return
    keys = {symbol: partition_key(now.date(), symbol) for symbol in names}
    facts = Facts(store, list(keys.values()), now).prefetch_latest(names)  # two queries for all symbols
    for span in store.symbol_spans(names):
        # _guarded calls each at once, inside its try: a symbol that cannot be checked is one `unknown`.
        yield from _guarded(f"candles {span.symbol}", partial(_candles, store, facts, keys[span.symbol], span, now))
        yield from _guarded(f"repairs {span.symbol}", partial(repairs, store, span.symbol, span.first, now))


def _candles(store: KlineStore, facts: Facts, key: str, span: SymbolSpan, now: datetime) -> Iterator[Finding]:
    return _symbol(store, span.symbol, span.first, span.newest, now, candles_fresh(facts, key))


def repairs(store: KlineStore, symbol: str, first: datetime | None, now: datetime) -> Iterator[Finding]:
    """The outage repair history of the last REPAIR_WINDOW (only for a symbol that has one)."""
    from kline_pipeline.repair import repair_history

    if first is None:
        return
    since = now - REPAIR_WINDOW
    attempts = repair_history(store, symbol=symbol, start=first, end=now + timedelta(days=1), since=since)
    if not attempts:
        return
    latest = {a.day: a for a in attempts}  # each day's latest attempt says what is still out
    recovered, still_out = sum(a.recovered for a in attempts), sum(a.still_out for a in latest.values())
    yield Finding("repairs", symbol, OK, f"last {REPAIR_WINDOW.days} days: {len(attempts)} outage re-fetch(es) of "
                  f"{len(latest)} day(s), {recovered} candle(s) recovered, {still_out} still out (the exchange has "
                  f"none); last {attempts[-1].attempted_at:%Y-%m-%d %H:%M}", {
                      "attempts": len(attempts), "recovered": recovered, "still_out": still_out,
                      "history": [a.to_json() for a in attempts[-20:]]})


def _symbol(store: KlineStore, symbol: str, first: datetime | None, newest: datetime | None, now: datetime,
            fresh: Outcome) -> Iterator[Finding]:
    """Freshness as candles_fresh judges it, then the gaps of the recent days (GAP_WINDOW)."""
    if newest is None:
        yield Finding("candles", symbol, PROBLEM, "no candle stored: launch a backfill (UI, or `kline-pipeline "
                      f"backfill --symbol {symbol} ...`) or let live_refresh fetch the latest")
        return
    assert first is not None  # a symbol with a newest candle has a first one (sql/health_symbols.sql)
    age = now - (newest + CANDLE)
    error = fresh.metadata.get("last_live_error")
    detail = (f"newest candle closed {ago(age)} ago (limit {ago(CANDLE + FRESHNESS_TOLERANCE)})"
              + (f"; last live tick failed: {error}" if error else ""))
    if "delisted" in fresh.metadata:  # nothing trades after it: an old newest candle is expected
        detail = f"delisted at {fresh.metadata['delisted']}, not refreshed any more; newest candle closed {ago(age)} ago"
    yield Finding("candles", symbol, OK if fresh.passed else PROBLEM, detail,
                  {**fresh.metadata, "candles_fresh": fresh.state})
    # The recent days only: a health check is polled, and a whole history is a backfill's report.
    # Candles that closed within the freshness tolerance are the freshness finding's, not gaps:
    # else one that closed a second ago, not fetched yet by the next live tick, counts as missing.
    first = max(first, now - GAP_WINDOW)
    end = max(now - FRESHNESS_TOLERANCE, newest + CANDLE, first + CANDLE)
    report = gap_report(store, symbol=symbol, start=first, end=end, now=now)
    missing = [s for s in report.spans if s.cause == MISSING]
    facts = {"since": first.isoformat(), "missing_candles": report.missing, "exchange_outage_candles":
             report.totals[OUTAGE], "missing_spans": [{"start": s.start.isoformat(), "end": s.end.isoformat(),
                                                       "candles": s.candles} for s in missing[:20]]}
    if not missing:
        yield Finding("gaps", symbol, OK, f"no missing candle since {first:%Y-%m-%d %H:%M}", facts)
        return
    yield Finding("gaps", symbol, PROBLEM, f"{report.missing:,} candles missing in {len(missing)} span(s) since "
                  f"{first:%Y-%m-%d %H:%M}, first {missing[0].start:%Y-%m-%d %H:%M} .. {missing[0].end:%Y-%m-%d %H:%M}; "
                  f"`kline-pipeline gaps --symbol {symbol} --start {first:%Y-%m-%dT%H:%MZ} --end "
                  f"{now:%Y-%m-%dT%H:%MZ}` lists them, a backfill of those days fills them", facts)


def runs(instance: dg.DagsterInstance, now: datetime) -> Iterator[Finding]:
    records = instance.get_run_records(filters=dg.RunsFilter(created_after=now - RUN_WINDOW))
    counts = Counter(r.dagster_run.status.value for r in records)
    queued = counts["QUEUED"] + counts["NOT_STARTED"]
    active = counts["STARTING"] + counts["STARTED"] + counts["CANCELING"]
    failed = [r.dagster_run for r in records if r.dagster_run.status.value == "FAILURE"]
    facts = {"window_minutes": RUN_WINDOW.total_seconds() / 60, "queued": queued, "in_progress": active,
             "succeeded": counts["SUCCESS"], "failed": len(failed), "canceled": counts["CANCELED"],
             "failed_runs": [{"run_id": r.run_id, "job": r.job_name} for r in failed[:20]]}
    detail = (f"last hour: {counts['SUCCESS']} succeeded, {queued} queued, {active} in progress, "
              f"{len(failed)} failed, {counts['CANCELED']} canceled")
    if failed:
        named = ", ".join(f"{r.run_id[:8]} ({r.job_name})" for r in failed[:5])
        yield Finding("runs", "", PROBLEM, f"{detail}: {named}; the run's log in the UI names the cause", facts)
    else:
        yield Finding("runs", "", OK, detail, facts)


def pools(instance: dg.DagsterInstance, now: datetime) -> Iterator[Finding]:
    storage = instance.event_log_storage
    for key in sorted(set(storage.get_concurrency_keys()) | {"bybit_api"}):
        info = storage.get_concurrency_info(key)
        limit = info.limit if info.limit is not None else instance.get_concurrency_config().pool_config.default_pool_limit
        held = [slot.run_id for slot in info.claimed_slots]
        facts = {"limit": limit, "in_use": len(held), "waiting": max(0, len(info.pending_steps) - len(held))}
        leaked = []
        for run_id in sorted(set(held)):
            record = instance.get_run_record_by_id(run_id)
            ended = record.end_time if record else None
            if ended is not None and now - datetime.fromtimestamp(ended, now.tzinfo) > SLOT_LEAK_AFTER:
                leaked.append(run_id)
        detail = f"limit {limit}, {facts['in_use']} in use, {facts['waiting']} step(s) waiting"
        if leaked:
            yield Finding("pool", key, PROBLEM, f"{detail}; held by finished run(s) {', '.join(leaked)}: free them in "
                          "the UI (Deployment -> Concurrency), or check that run monitoring is enabled", facts)
        else:
            yield Finding("pool", key, OK, detail, facts)


def check_health(instance: dg.DagsterInstance, store: KlineStore, *, now: datetime) -> HealthReport:
    """Every finding, in the order doctor prints them."""
    home = Finding("dagster instance", "", OK, f"DAGSTER_HOME={instance.root_directory}, runs in "
                   f"{type(instance.run_storage).__name__}", {"dagster_home": instance.root_directory})
    findings = [
        *_guarded("candle database", lambda: candle_database(store)), home,
        *_guarded("daemon", lambda: daemons(instance, now)),
        *_guarded("automation", lambda: automation(instance, now)),
        *_guarded("symbols", lambda: symbols(instance, store, now)),
        *_guarded("runs", lambda: runs(instance, now)),
        *_guarded("pool", lambda: pools(instance, now)),
    ]
    return HealthReport(checked_at=now, findings=tuple(findings))
