"""murmur3_x86_32(salt + "/" + id) for many ids at once, with numpy (`expc[batch]`).

Ids are sorted by the length of their UTF-8, so that ids of one length form a dense
byte matrix: every row has the same blocks and the same tail, and the hash runs column
by column with no masks and no padding. The cost is that of the bytes there are, never
of the widest id. Lengths with few ids, and long ids, are hashed one by one with mmh3,
which beats numpy's eight operations per four bytes there (`_vectorised`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mmh3
import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from expc.sdk.bucketing import BLOCK_ADD, C1, C2, FINAL_1, FINAL_2, blocks_state, utf8
from expc.sdk.conditions import well_formed

U32 = np.uint32
Positions = npt.NDArray[np.intp]
Hashes = npt.NDArray[np.uint32]

# Measured on CPython 3.11 with numpy 2: a numpy call costs about 1.5 us plus 1 ns per
# element, a murmur3 block about 8 calls, one mmh3.hash of a short text 0.25 us.
_CALL_US, _ELEMENT_US, _SCALAR_US, _CALLS_PER_BYTE = 1.5, 0.001, 0.25, 2.0


def _vectorised(count: int, width: int) -> bool:
    """Whether `count` ids of `width` bytes hash faster as a matrix than one by one."""
    calls = _CALLS_PER_BYTE * width + 20  # the blocks, the tail and the finish
    return calls * (_CALL_US + count * _ELEMENT_US) < count * _SCALAR_US


class _Run:
    """The ids of one length, as a byte matrix, at sorted positions [start, end)."""

    def __init__(self, start: int, end: int, width: int, matrix: npt.NDArray[np.uint8]) -> None:
        self.start, self.end, self.width = start, end, width
        self.matrix = matrix
        self._words: dict[int, npt.NDArray[np.uint32]] = {}

    def words(self, shift: int) -> npt.NDArray[np.uint32]:
        """The ids as little-endian words after `shift` zero bytes (0..3), zero-padded
        to whole words: where the salt's last bytes go. Cached per shift."""
        if shift not in self._words:
            size = shift + self.width
            data = np.zeros((self.end - self.start, size + (-size % 4)), dtype=np.uint8)
            data[:, shift:size] = self.matrix
            self._words[shift] = data.view("<u4").astype(np.uint32)
        return self._words[shift]


class IdHashes:
    """Many ids, sorted by byte length, ready to be hashed against any salt.

    `order[p]` is the index in `ids` of the id at sorted position p; `texts` and
    `lengths` are in sorted order. The ids are taken as the scalar evaluator reads
    them: well-formed text (a lone surrogate is U+FFFD), so both hash the same bytes."""

    def __init__(self, ids: Sequence[str]) -> None:
        lengths, offsets, buffer = _ascii_layout(ids)
        if lengths is None:
            ids = [well_formed(i) for i in ids]
            encoded = [i.encode("utf-8") for i in ids]
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(ids))
            offsets = np.cumsum(lengths) - lengths
            buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.order: Positions = np.argsort(lengths, kind="stable")
        self.lengths = lengths[self.order]
        self._ids = ids
        self._texts: list[str] | None = None
        self.runs: list[_Run] = []
        loose: list[Positions] = []
        # Sorted lengths: each length starts where the one before ends.
        starts = [0, *(np.flatnonzero(np.diff(self.lengths)) + 1).tolist()]
        ends = [*starts[1:], len(ids)]
        widths = self.lengths[starts].tolist() if len(ids) else []
        for width, start, end in zip(widths, starts, ends, strict=True):
            if width and _vectorised(end - start, width):
                # Each id's bytes as one row of a window sliding over the buffer (a
                # view): picking rows copies `width` bytes per id, where an index matrix
                # of `width` offsets per id would cost eight times the bytes it reads.
                rows = offsets[self.order[start:end]]
                matrix = sliding_window_view(buffer, width)[rows]
                self.runs.append(_Run(start, end, width, matrix))
            elif width:
                loose.append(self.order[start:end])
        self._run_starts = np.array([run.start for run in self.runs], dtype=np.intp)
        self._run_ends = np.array([run.end for run in self.runs], dtype=np.intp)
        # Sorted position -> text of the ids hashed one by one.
        self._loose = np.zeros(len(ids), dtype=bool)
        self._loose_texts: dict[int, str] = {}
        position_of = np.empty(len(ids), dtype=np.intp)
        position_of[self.order] = np.arange(len(ids))
        for indices in loose:
            positions = position_of[indices]
            self._loose[positions] = True
            self._loose_texts.update(
                zip(positions.tolist(), (ids[i] for i in indices.tolist()), strict=True)
            )

    @property
    def texts(self) -> list[str]:
        """The ids in sorted order; made when first asked for (by overrides, conditions
        on ids, and ids hashed one by one), which most bundles never do."""
        if self._texts is None:
            ids = self._ids
            self._texts = [ids[i] for i in self.order.tolist()]
        return self._texts

    def murmur3(self, salt_and_slash: str, positions: Positions) -> Hashes:
        """murmur3_x86_32(salt + "/" + id) of the ids at sorted `positions` (increasing;
        none empty), in that order."""
        hashes = np.empty(len(positions), dtype=np.uint32)
        prefix = utf8(salt_and_slash)
        # Positions are sorted and each run is a range of them: one slice per run.
        firsts = np.searchsorted(positions, self._run_starts)
        lasts = np.searchsorted(positions, self._run_ends)
        for run, first, last in zip(self.runs, firsts.tolist(), lasts.tolist(), strict=True):
            if last > first:
                hashes[first:last] = _hash_run(prefix, run, positions[first:last] - run.start)
        alone = np.nonzero(self._loose[positions])[0]
        if len(alone):
            texts = self._loose_texts
            hashes[alone] = [
                mmh3.hash(salt_and_slash + texts[p], 0, False) for p in positions[alone].tolist()
            ]
        return hashes


def _ascii_layout(ids: Sequence[str]) -> tuple[Any, Any, Any]:
    """The lengths, offsets and bytes of ids that are all ASCII, else Nones.

    The ids are joined by U+00FF, whose Latin-1 byte 0xFF is in no ASCII text: the bytes
    above 0x7F are then exactly the separators, and they give every length at once. One
    pass over the ids instead of two, which matters: it is memory-bound."""
    try:
        raw = "\xff".join(ids).encode("latin-1") + b"\xff"
    except UnicodeEncodeError:
        return None, None, None
    separated = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(separated >= 0x80)
    if len(ends) != len(ids):  # a byte over 0x7F that is no separator: not ASCII
        return None, None, None
    lengths = np.diff(ends, prepend=-1) - 1
    return lengths, ends - lengths, separated


def _hash_run(prefix: bytes, run: _Run, rows: Positions) -> Hashes:
    """murmur3 of `prefix` + each id of `run` at `rows` (all of one width)."""
    aligned = len(prefix) - len(prefix) % 4
    head = prefix[aligned:]
    words = run.words(len(head))
    every_row = len(rows) == run.end - run.start
    total = len(prefix) + run.width
    blocks = (total - aligned) // 4

    def column(j: int) -> Hashes:
        chosen = words[:, j] if every_row else words[rows, j]
        if j == 0 and head:  # the salt's last bytes share the first word with the id
            return chosen | U32(int.from_bytes(head, "little"))
        return chosen

    h = np.full(len(rows), blocks_state(prefix[:aligned]), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for j in range(blocks):
            k = column(j) * U32(C1)
            k = (k << U32(15)) | (k >> U32(17))
            k *= U32(C2)
            h ^= k
            h = (h << U32(13)) | (h >> U32(19))
            h *= U32(5)
            h += U32(BLOCK_ADD)
        if total % 4:
            k = column(blocks) * U32(C1)
            k = (k << U32(15)) | (k >> U32(17))
            k *= U32(C2)
            h ^= k
        h ^= U32(total & 0xFFFFFFFF)
        h ^= h >> U32(16)
        h *= U32(FINAL_1)
        h ^= h >> U32(13)
        h *= U32(FINAL_2)
        h ^= h >> U32(16)
    return h
