"""How a build cuts the folder into chunks for its workers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from publisher.publish.workers import chunked


@given(st.integers(0, 5000), st.integers(1, 8))
def test_chunks_cover_every_item_once_in_order_and_none_is_empty(n: int, workers: int) -> None:
    chunks = chunked(list(range(n)), workers)
    assert [x for chunk in chunks for x in chunk] == list(range(n))
    assert all(0 < len(chunk) <= 200 for chunk in chunks)


def test_the_last_rounds_are_cut_finer_so_workers_finish_together() -> None:
    sizes = [len(chunk) for chunk in chunked(list(range(10_000)), 2)]
    # 200 a chunk (one transaction each) until two rounds of the two workers are left, then a quarter of that.
    assert sizes[:46] == [200] * 46 and sizes[46:] == [50] * 16
    assert max(chunked(list(range(10_000)), 2)[-1]) == 9_999
