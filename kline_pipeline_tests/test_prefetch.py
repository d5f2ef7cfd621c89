"""The read-ahead used to overlap fetching and writing."""

import threading
import time

import pytest

from kline_pipeline.prefetch import prefetched


def test_items_arrive_in_order_and_complete():
    assert list(prefetched(iter(range(100)), depth=3)) == list(range(100))


def test_an_error_in_the_source_is_raised_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise RuntimeError("window 3 failed")

    seen = []
    with pytest.raises(RuntimeError, match="window 3 failed"):
        for item in prefetched(source()):
            seen.append(item)
    assert seen == [1, 2]


def test_the_source_runs_ahead_while_the_consumer_works():
    produced: list[float] = []

    def source():
        for i in range(3):
            produced.append(time.monotonic())
            yield i

    started = time.monotonic()
    for _ in prefetched(source(), depth=2):
        time.sleep(0.2)  # the consumer is slow: the source must not wait for it
    assert produced[2] - started < 0.3


def test_a_consumer_that_stops_early_stops_the_source():
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield i

    for item in prefetched(source(), depth=2):
        if item == 1:
            break
    time.sleep(0.3)
    assert len(pulled) <= 5
    assert not [t for t in threading.enumerate() if t.name == "kline-prefetch"]
