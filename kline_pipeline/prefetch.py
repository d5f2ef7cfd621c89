"""Run an iterator one step ahead in a thread, so fetching overlaps writing.

While PostgreSQL writes the days of one window, the next window's HTTP request is already
in flight (both release the GIL while they wait), which is most of the end-to-end time.
"""

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetched(source: Iterator[T], *, depth: int = 2) -> Iterator[T]:
    """Yield the items of `source`, produced up to `depth` items ahead in a worker thread.

    An exception in `source` is re-raised here, in order; if the consumer stops early (or
    fails), the worker is told to stop and does not fetch further.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((_DONE, exc))

    worker = threading.Thread(target=work, name="kline-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=30)
