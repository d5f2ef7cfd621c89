"""A process-wide request budget for Bybit.

Every BybitClient in one process draws from the same limiter for the same rate, so parallel
steps in a multithreaded run cannot exceed it together. Across runs the Dagster pool
`bybit_api` bounds how many such processes talk to Bybit at once.
"""

import threading
import time


class RateLimiter:
    """Token bucket: at most `rate` requests per second, with bursts of at most `burst`."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"requests_per_second must be > 0, got {rate!r}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._updated = time.monotonic()
        self._lock = threading.Lock()
        self._paused_until = 0.0  # time.monotonic() before which no request may start

    def pause(self, seconds: float) -> None:
        """Let no caller start a request for `seconds` (an IP-wide limit, e.g. Bybit's 10018, holds
        every thread, not only the one it answered); a longer pause already set stays."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def acquire(self) -> float:
        """Take one token, sleeping until one is available (and any pause is over); returns the
        seconds waited."""
        paused = 0.0
        while True:
            with self._lock:
                left = self._paused_until - time.monotonic()
            if left <= 0:
                break
            time.sleep(left)
            paused += left
        return paused + self._take()

    def _take(self) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            # A negative balance is the wait this caller owes; holding the lock while computing it
            # (not while sleeping) keeps callers in arrival order without serialising the sleeps.
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            time.sleep(wait)
        return wait


_limiters: dict[float, RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(rate: float) -> RateLimiter:
    """The process-wide limiter for `rate` requests per second."""
    with _limiters_lock:
        limiter = _limiters.get(rate)
        if limiter is None:
            limiter = _limiters[rate] = RateLimiter(rate)
        return limiter
