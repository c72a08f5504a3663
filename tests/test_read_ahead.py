"""ReadAhead: a decoder iterated on a background thread keeps order, raises its errors
at the item where they happened, and stops (closing the decoder) when the caller stops."""

from __future__ import annotations

import threading

import pytest

from animlora.io.video import ReadAhead


def test_items_in_order_and_an_error_where_it_happened():
    def source():
        yield from range(5)
        raise ValueError("corrupt at 5")

    got = []
    with pytest.raises(ValueError, match="corrupt at 5"), ReadAhead(source(), depth=2) as items:
        for item in items:
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_stopping_early_closes_the_source_and_ends_the_thread():
    closed = threading.Event()

    def source():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    before = threading.active_count()
    with ReadAhead(source(), depth=3) as items:
        assert [next(items) for _ in range(4)] == [0, 1, 2, 3]
    assert closed.is_set()
    assert threading.active_count() == before
    with pytest.raises(StopIteration):
        next(items)


def test_reference_frames_through_read_ahead_equal_a_direct_read(tmp_path):
    import numpy as np

    from animlora.io.video import ReferenceFrames, luma
    from media import make_synthetic

    path = make_synthetic(tmp_path / "b.mp4", bframes=True)
    direct = ReferenceFrames(path)
    expected = [(f.index, f.time, luma(f.frame).copy()) for f in direct]
    ahead = ReferenceFrames(path)
    with ReadAhead(ahead) as frames:
        got = [(f.index, f.time, luma(f.frame).copy()) for f in frames]
    assert 0 < len(got) < ahead.count  # B-frames skipped
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    assert all(np.array_equal(g[2], e[2]) for g, e in zip(got, expected, strict=True))
    assert (ahead.count, ahead.decoded) == (direct.count, direct.decoded)
