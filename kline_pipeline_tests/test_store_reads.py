"""The read model (kline_pipeline/store_reads.py): rows of the read queries become named fields.

The queries themselves run against PostgreSQL in test_store, test_gaps, test_checks and
test_repair; these pin how their rows are read, column by column."""

from datetime import UTC, date, datetime
from decimal import Decimal

from kline_pipeline.store import KlineStore
from kline_pipeline.store_reads import (
    GapContext,
    GapHoles,
    PartialBucket,
    RollupBucket,
    RollupMismatch,
    StoreReads,
    by_symbol_days,
)

T = [datetime(2025, 1, 1, h, tzinfo=UTC) for h in range(6)]


def test_gap_holes_reads_the_holes_and_the_count_of_every_row():
    # (hole_start, hole_end, present): the end sentinel's row has no hole but the count.
    rows = [(T[0], T[1], 10), (T[2], T[3], 10), (None, None, 10)]
    assert GapHoles.from_rows(rows) == GapHoles(present=10, holes=((T[0], T[1]), (T[2], T[3])))
    assert GapHoles.from_rows([(None, None, 0)]) == GapHoles(present=0, holes=())


def test_gap_context_reads_listing_delisting_and_outages():
    # (launch_time, listing_known, outage start, outage end, delivery_time)
    rows = [(T[0], True, T[1], T[2], T[5]), (T[0], True, T[3], T[4], T[5])]
    assert GapContext.from_rows(rows) == GapContext(listing=T[0], listing_known=True, delisting=T[5],
                                                    outages=((T[1], T[2]), (T[3], T[4])))
    never_ingested = GapContext.from_rows([(None, False, None, None, None)])
    assert never_ingested == GapContext(listing=None, listing_known=False, delisting=None, outages=())


def test_buckets_belong_to_their_utc_day():
    late = datetime(2025, 1, 1, 23, 0, tzinfo=UTC)
    assert RollupMismatch(late, "differs").day == PartialBucket(late, 3).day == date(2025, 1, 1)


def test_rollup_bucket_values_in_bybit_order():
    bucket = RollupBucket(T[0], *(Decimal(n) for n in "123456"))
    assert bucket.values() == tuple(Decimal(n) for n in "123456")


def test_due_days_grouped_by_symbol_in_row_order():
    rows = [("A", date(2025, 1, 1), T[0]), ("A", date(2025, 1, 3), T[0]), ("B", date(2025, 1, 2), T[0])]
    assert by_symbol_days(rows) == {"A": [date(2025, 1, 1), date(2025, 1, 3)], "B": [date(2025, 1, 2)]}


def test_the_store_is_the_gateway_of_the_reads():
    assert issubclass(KlineStore, StoreReads)
    assert KlineStore.query is not StoreReads.query  # the store runs the SQL
