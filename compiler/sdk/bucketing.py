"""DESIGN §3, normative: every SDK must match this bit for bit.

    h     = murmur3_x86_32(utf8(salt + "/" + value), seed 0), unsigned
    utf8  = UTF-8 as JavaScript's TextEncoder writes it: a lone surrogate is U+FFFD
    alloc = h % 100
    point = h // 100                      (0 .. 42949672)
    B(c)  = c * 42949673 // 10000         (c: cumulative basis points)

Shares are integers in basis points (percent x 100), so no float ever decides a range.
This module imports only the standard library, mmh3 and `expc.sdk.conditions` (standard
library only): the evaluator uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import mmh3

from expc.sdk.conditions import well_formed

POINTS = 42_949_673  # number of distinct points: 0 .. 42949672
FULL = 10_000  # 100 % in basis points


def utf8(text: str) -> bytes:
    """The bytes every SDK hashes for `text`: its UTF-8 after `well_formed` (a lone
    surrogate, which has no UTF-8, becomes U+FFFD, and a split pair its character)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return well_formed(text).encode("utf-8")


def murmur3(data: str | bytes) -> int:
    """murmur3_x86_32 with seed 0, unsigned: the one place the hash is taken.

    A `str` must be well-formed text (see `utf8`): it is hashed as its UTF-8. The
    evaluator passes `salt + "/" + value` as text, which saves encoding it first.
    """
    return int(mmh3.hash(data, 0, False))


def hash_value(salt: str, value: str) -> int:
    return murmur3(utf8(salt + "/" + value))


# The block step of murmur3_x86_32, for code that hashes many values with one prefix
# (the numpy batch path) or runs the hash backwards (conformance vectors).
MASK = 0xFFFFFFFF
C1, C2 = 0xCC9E2D51, 0x1B873593
BLOCK_ADD = 0xE6546B64
FINAL_1, FINAL_2 = 0x85EBCA6B, 0xC2B2AE35


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & MASK


def blocks_state(data: bytes) -> int:
    """The hash state after the full blocks of `data` (its length is a multiple of 4)."""
    h = 0
    for offset in range(0, len(data), 4):
        k = int.from_bytes(data[offset : offset + 4], "little")
        k = (_rotl((k * C1) & MASK, 15) * C2) & MASK
        h = (_rotl(h ^ k, 13) * 5 + BLOCK_ADD) & MASK
    return h


def alloc(h: int) -> int:
    return h % 100


def point(h: int) -> int:
    return h // 100


def boundary(cumulative_bp: int) -> int:
    """The first point beyond a cumulative share, B(c)."""
    return cumulative_bp * POINTS // FULL


def basis_points(percent: Decimal | int) -> int:
    """Percent with at most two decimals to basis points, exactly."""
    value = Decimal(percent) * 100
    if value != value.to_integral_value():
        raise ValueError(f"{percent} has more than two decimals")
    return int(value)


def fill_shares(explicit: Sequence[int | None], total: int = FULL) -> list[int]:
    """Shares in basis points where `None` splits what is left evenly.

    The remainder of the even split goes to the first omitted share, so the result
    sums exactly to `total` whenever anything was omitted.
    """
    given = sum(share for share in explicit if share is not None)
    omitted = [i for i, share in enumerate(explicit) if share is None]
    shares = [share or 0 for share in explicit]
    if omitted:
        rest = max(total - given, 0)
        each, remainder = divmod(rest, len(omitted))
        for i in omitted:
            shares[i] = each
        shares[omitted[0]] += remainder
    return shares


def ranges(shares_bp: Sequence[int], start_bp: int = 0) -> list[tuple[int, int]]:
    """Half-open point ranges for consecutive shares, starting at `start_bp`."""
    result = []
    cumulative = start_bp
    for share in shares_bp:
        begin = boundary(cumulative)
        cumulative += share
        result.append((begin, boundary(cumulative)))
    return result
