"""Find a bucketing value that hashes to a chosen number, for conformance vectors.

murmur3_x86_32 is invertible block by block: its finaliser and its block step are
bijections on 32 bits. So for `salt + "/" + value` we pick a value whose length puts its
last four bytes in a block of their own, run the hash forwards up to that block,
run it backwards from the wanted result, and solve for the four bytes. About 1 in 50
solutions is printable ASCII; trying further fillers finds one quickly. A user "at the
boundary" is then exactly at it, not merely near it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import mmh3

from compiler.bucketing import utf8

_MASK = 0xFFFFFFFF
_C1, _C2 = 0xCC9E2D51, 0x1B873593
_C1_INVERSE, _C2_INVERSE = pow(_C1, -1, 2**32), pow(_C2, -1, 2**32)
_FIVE_INVERSE = pow(5, -1, 2**32)
_F1_INVERSE, _F2_INVERSE = pow(0x85EBCA6B, -1, 2**32), pow(0xC2B2AE35, -1, 2**32)
# Printable ASCII without the characters JSON escapes, so vectors stay readable.
_ALLOWED = frozenset(range(0x21, 0x7F)) - {ord('"'), ord("\\")}


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def blocks_state(data: bytes) -> int:
    """The hash state after the full blocks of `data` (its length is a multiple of 4)."""
    h = 0
    for offset in range(0, len(data), 4):
        k = int.from_bytes(data[offset : offset + 4], "little")
        k = (_rotl((k * _C1) & _MASK, 15) * _C2) & _MASK
        h = (_rotl(h ^ k, 13) * 5 + 0xE6546B64) & _MASK
    return h


def _undo_xorshift(h: int, shift: int) -> int:
    result = h
    for _ in range(32 // shift):
        result = h ^ (result >> shift)
    return result


@functools.lru_cache(maxsize=65_536)
def _unfinalise(h: int) -> int:
    # Cached: the same targets come back for every filler and every retry of a boundary.
    h = _undo_xorshift(h, 16)
    h = (h * _F2_INVERSE) & _MASK
    h = _undo_xorshift(h, 13)
    h = (h * _F1_INVERSE) & _MASK
    return _undo_xorshift(h, 16)


def _fillers(prefix_length: int, stem: str) -> Iterator[str]:
    """Values `stem-N` padded so that four more bytes end exactly on a block."""
    counter = 0
    while True:
        filler = f"{stem}-{counter}-"
        filler += "x" * (-(prefix_length + len(filler)) % 4)
        yield filler
        counter += 1


def value_hashing_to(salt: str, targets: list[int], stem: str, limit: int = 20_000) -> str | None:
    """A printable value v with murmur3(salt + "/" + v) in `targets`, or None."""
    prefix = utf8(salt + "/")
    unfinalised = [_unfinalise(target) for target in targets]
    tried = 0
    for filler in _fillers(len(prefix), stem):
        head = prefix + filler.encode("ascii")
        state = blocks_state(head)
        length = len(head) + 4
        for target, before_finaliser in zip(targets, unfinalised, strict=True):
            # The last block step, run backwards (inlined: this is the
            # loop vector generation spends its time in).
            mixed = (((before_finaliser ^ length) - 0xE6546B64) * _FIVE_INVERSE) & _MASK
            mixed = (((mixed >> 13) | (mixed << 19)) & _MASK) ^ state
            k = (mixed * _C2_INVERSE) & _MASK
            block = ((((k >> 15) | (k << 17)) & _MASK) * _C1_INVERSE) & _MASK
            raw = block.to_bytes(4, "little")
            if (
                raw[0] in _ALLOWED
                and raw[1] in _ALLOWED
                and raw[2] in _ALLOWED
                and raw[3] in _ALLOWED
            ):
                value = filler + raw.decode("ascii")
                assert mmh3.hash(prefix + value.encode("ascii"), 0, False) == target
                return value
            tried += 1
            if tried >= limit:
                return None
    return None  # pragma: no cover - the filler sequence never ends
