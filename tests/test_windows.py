"""Window planning and pe-token assignment: the tables of ARCHITECTURE.md §4.2 and §9.1."""

import pytest

from loger3d.model.windows import frame_roles, pe_token_counts, plan_windows


@pytest.mark.parametrize("ws,ov,n,expected", [
    (32, 3, 32, (3, 26, 3)),
    (32, 3, 30, (3, 26, 1)),
    (32, 3, 10, (3, 7, 0)),
    (64, 3, 64, (3, 58, 3)),
    (2, 1, 2, (1, 0, 1)),
    (4, 2, 3, (2, 0, 1)),
    (8, 1, 4, (1, 3, 0)),
])
def test_pe_token_table(ws, ov, n, expected):
    assert pe_token_counts(n, ws, ov) == expected
    roles = frame_roles(n, ws, ov)
    assert roles == sorted(roles) and [roles.count(r) for r in (0, 1, 2)] == list(expected)


def test_whole_sequence_window_counts_as_window_n():
    # The official release crashes here (ws = -1, ov = 1, N = 4); we treat the window as N.
    assert pe_token_counts(4, -1, 1) == (1, 2, 1)


def spans(n, ws, ov):
    return [(w.start, w.end) for w in plan_windows(n, ws, ov)]


def test_window_table():
    assert spans(4, 2, 1) == [(0, 2), (1, 3), (2, 4)]
    assert spans(50, 32, 3) == [(0, 32), (29, 50)]
    assert spans(10, 0, 3) == [(0, 10)]
    assert spans(10, 10, 3) == [(0, 10)]
    assert spans(10, 32, 3) == [(0, 10)]


@pytest.mark.parametrize("n,ws,ov", [(4, 2, 1), (50, 32, 3), (100, 32, 3), (7, 3, 1), (6, 4, 2), (9, 4, 0)])
def test_kept_frames_cover_the_sequence_once(n, ws, ov):
    windows = plan_windows(n, ws, ov)
    kept = [f for w in windows for f in range(w.start, w.keep_end)]
    assert kept == list(range(n))
    for a, b in zip(windows, windows[1:]):
        assert b.start == a.end - ov  # consecutive chunks share exactly `ov` frames
        assert a.keep_end == a.end - ov  # overlap frames are taken from the later chunk
    assert windows[-1].keep_end == n


def test_bad_settings():
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(10, 3, 3)
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(10, 3, -1)
    with pytest.raises(ValueError, match="empty"):
        plan_windows(0, 3, 1)
