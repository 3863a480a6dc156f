"""DESIGN §3: the hash, alloc/point and the basis-point ranges, bit for bit."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from expc.sdk.bucketing import (
    FULL,
    POINTS,
    alloc,
    basis_points,
    boundary,
    fill_shares,
    hash_value,
    point,
    ranges,
)


@pytest.mark.parametrize(
    ("salt", "value", "expected"),
    [
        ("s0aLt0x", "user-1", 3200945193),
        ("s0aLt0x", "user-3", 942312772),
        ("s0aLt0x", "alice@example.com", 3271796116),
        ("nI33zio8", "device_id", 4074860200),
        ("checkout", "用户-7", 1248903903),
    ],
)
def test_hash_matches_published_vectors(salt: str, value: str, expected: int) -> None:
    h = hash_value(salt, value)
    assert h == expected
    assert (alloc(h), point(h)) == (expected % 100, expected // 100)


def test_full_share_ends_exactly_at_the_last_point() -> None:
    assert boundary(FULL) == POINTS
    assert point(2**32 - 1) == POINTS - 1
    assert ranges([5000, 5000]) == [(0, 21474836), (21474836, 42949673)]


def test_basis_points_are_exact_and_refuse_three_decimals() -> None:
    from decimal import Decimal

    assert basis_points(Decimal("33.33")) == 3333
    assert basis_points(50) == 5000
    with pytest.raises(ValueError, match="two decimals"):
        basis_points(Decimal("33.333"))


def test_omitted_shares_split_evenly_with_the_remainder_first() -> None:
    assert fill_shares([None, None, None]) == [3334, 3333, 3333]
    assert fill_shares([2000, None, None]) == [2000, 4000, 4000]
    assert fill_shares([2500, 2500]) == [2500, 2500]


shares_strategy = st.lists(st.integers(min_value=0, max_value=FULL), min_size=1, max_size=20).map(
    lambda shares: shares if sum(shares) <= FULL else fill_shares([None] * len(shares))
)


@given(shares_strategy)
def test_ranges_tile_without_overlap(shares: list[int]) -> None:
    spans = ranges(shares)
    assert spans[0][0] == 0
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == start  # contiguous, so never overlapping
    assert all(start <= end for start, end in spans)
    assert spans[-1][1] == boundary(sum(shares))
    if sum(shares) == FULL:
        assert spans[-1][1] == POINTS


@given(st.integers(min_value=0, max_value=2**32 - 1), shares_strategy)
def test_every_point_lands_in_at_most_one_range(h: int, shares: list[int]) -> None:
    hits = [i for i, (start, end) in enumerate(ranges(shares)) if start <= point(h) < end]
    assert len(hits) <= 1
    if sum(shares) == FULL:
        assert len(hits) == 1


@given(
    st.text(min_size=1, max_size=40),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=100),
)
def test_raising_traffic_only_adds_users(user: str, low: int, high: int) -> None:
    low, high = sorted((low, high))
    a = alloc(hash_value("exp", user))
    entered_low, entered_high = a < low, a < high
    assert not entered_low or entered_high


@given(st.integers(min_value=0, max_value=FULL), st.integers(min_value=0, max_value=FULL))
def test_growing_a_holdout_only_adds_held_out_points(p1: int, p2: int) -> None:
    small, large = sorted((p1, p2))
    assert boundary(small) <= boundary(large)
