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

from expc.sdk.bucketing import (
    BLOCK_ADD,
    C1,
    C2,
    FINAL_1,
    FINAL_2,
    MASK,
    blocks_state,
    murmur3,
    utf8,
)

_C1_INVERSE, _C2_INVERSE = pow(C1, -1, 2**32), pow(C2, -1, 2**32)
_FIVE_INVERSE = pow(5, -1, 2**32)
_F1_INVERSE, _F2_INVERSE = pow(FINAL_1, -1, 2**32), pow(FINAL_2, -1, 2**32)
# Printable ASCII without the characters JSON escapes, so vectors stay readable.
_ALLOWED = frozenset(range(0x21, 0x7F)) - {ord('"'), ord("\\")}


def _undo_xorshift(h: int, shift: int) -> int:
    result = h
    for _ in range(32 // shift):
        result = h ^ (result >> shift)
    return result


@functools.lru_cache(maxsize=65_536)
def _unfinalise(h: int) -> int:
    # Cached: the same targets come back for every filler and every retry of a boundary.
    h = _undo_xorshift(h, 16)
    h = (h * _F2_INVERSE) & MASK
    h = _undo_xorshift(h, 13)
    h = (h * _F1_INVERSE) & MASK
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
            mixed = (((before_finaliser ^ length) - BLOCK_ADD) * _FIVE_INVERSE) & MASK
            mixed = (((mixed >> 13) | (mixed << 19)) & MASK) ^ state
            k = (mixed * _C2_INVERSE) & MASK
            block = ((((k >> 15) | (k << 17)) & MASK) * _C1_INVERSE) & MASK
            raw = block.to_bytes(4, "little")
            if (
                raw[0] in _ALLOWED
                and raw[1] in _ALLOWED
                and raw[2] in _ALLOWED
                and raw[3] in _ALLOWED
            ):
                value = filler + raw.decode("ascii")
                assert murmur3(prefix + value.encode("ascii")) == target
                return value
            tried += 1
            if tried >= limit:
                return None
    return None  # pragma: no cover - the filler sequence never ends
