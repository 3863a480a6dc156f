"""`at`: a user id whose draws land where a case says (DESIGN §11).

`at: {search-ranking: 60%}` stands for a user whose point in `search-ranking` lies in
the range that holds 60% of its points: slot 2 of that group. For an experiment the
user also falls within its traffic, so that the draw decides the variant. With one
flag the id is solved for (`outputs.preimage` runs murmur3 backwards), so its point is
exactly that percent; with several, ids `at-0`, `at-1`, ... are tried in order. Either
way the same case always gets the same id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from expc.outputs.bundle_types import Flag
from expc.outputs.preimage import value_hashing_to
from expc.sdk.bucketing import POINTS, murmur3, utf8

# Several flags: ids tried before giving up, and the smallest share of users the
# ranges may hold together for a search of that length to find one for certain
# (the chance of missing is then below e**-20).
SEARCH_LIMIT = 1_000_000
SMALLEST_SHARE = Fraction(20, SEARCH_LIMIT)
# One flag: solved ids whose last four characters are not all letters or digits are
# skipped, so that an id can be pasted into YAML or a shell as it is.
_READABLE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_SOLVE_ATTEMPTS = 200


@dataclass(frozen=True)
class Draw:
    """Where one flag's draw must land: a point in `[low, high)` and an alloc below
    `traffic`."""

    flag: str
    salt: str
    low: int
    high: int
    traffic: int
    lands: str  # what that range is: a variant or slot, or `unallocated`
    target: int  # the point at the percent itself

    @property
    def share(self) -> Fraction:
        return Fraction(self.high - self.low, POINTS) * Fraction(self.traffic, 100)

    def holds(self, value: str) -> bool:
        point, allocation = divmod(murmur3(utf8(self.salt + "/" + value)), 100)
        return self.low <= point < self.high and allocation < self.traffic


def draw(flag: Flag, percent: Decimal) -> Draw:
    """The range of `flag` that holds `percent` of its points."""
    target = min(int(Fraction(percent) * POINTS / 100), POINTS - 1)
    low, high, lands = 0, POINTS, "unallocated"
    for variant in flag["variants"]:
        start, end = variant["range"]
        if start <= target < end:
            low, high, lands = start, end, variant["key"]
            break
        if start < end <= target:
            low = max(low, end)
        elif target < start < end:
            high = min(high, start)
    # An experiment's user also enters its traffic; 0% traffic lets nobody in anyway.
    traffic = flag["traffic"] if flag["kind"] == "experiment" and flag["traffic"] else 100
    return Draw(flag["key"], flag["bucketing"]["salt"], low, high, traffic, lands, target)


def together(draws: Sequence[Draw]) -> Fraction:
    """The share of users whose draws land in all of them (the draws are independent)."""
    return math.prod((d.share for d in draws), start=Fraction(1))


def user_for(draws: Sequence[Draw]) -> str | None:
    """An id whose draws land in every range, the same one on every run; None when the
    ranges hold too few users together to find one."""
    if len(draws) == 1:
        solved = _solved(draws[0])
        if solved is not None:
            return solved
    if together(draws) < SMALLEST_SHARE:
        return None
    for number in range(SEARCH_LIMIT):
        value = f"at-{number}"
        if all(d.holds(value) for d in draws):
            return value
    return None  # pragma: no cover - the share makes a miss all but impossible


def _solved(one: Draw) -> str | None:
    """An id whose point is exactly the percent's, and whose alloc enters."""
    targets = [100 * one.target + a for a in range(one.traffic) if 100 * one.target + a < 2**32]
    for attempt in range(_SOLVE_ATTEMPTS):
        value = value_hashing_to(one.salt, targets, f"at{attempt}")
        if value is not None and _READABLE.issuperset(value[-4:]):
            return value
    return None
