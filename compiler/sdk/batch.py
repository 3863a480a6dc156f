"""Assign many users at once with numpy, for offline analysis (`pip install expc[batch]`).

    from expc.sdk.batch import assign
    assignment = assign(evaluator, ["user-1", "user-2", ...])
    assignment.variants("checkout-one-page")   # array of variant names, None when out
    assignment.results("checkout-one-page")    # the same Result objects as the evaluator

Users are bucketing values only (every `by` attribute set to the id, as in
`expc simulate`). The result is exactly what `Evaluator.evaluate` gives for each user,
flag by flag: the same steps of DESIGN §4, on whole arrays. murmur3 runs vectorised:
the salt's full 4-byte blocks are hashed once, and only the blocks that hold the user's
id are hashed per user. Conditions that read the bucketing attribute (cohorts of ids)
are evaluated per user; every other condition has one answer for all these users and is
evaluated once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from expc.sdk.bucketing import BLOCK_ADD, C1, C2, FINAL_1, FINAL_2, blocks_state, utf8
from expc.sdk.conditions import well_formed
from expc.sdk.evaluate import (
    NO_BUCKETING_VALUE,
    NOT_RUNNING,
    TARGETING,
    TRAFFIC,
    UNALLOCATED,
    Evaluator,
    PreparedFlag,
    Result,
    safely,
)

U32 = np.uint32
_C1, _C2 = U32(C1), U32(C2)


def _rotl(x: npt.NDArray[np.uint32], r: int) -> npt.NDArray[np.uint32]:
    return (x << U32(r)) | (x >> U32(32 - r))


def _fmix(h: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    h = h ^ (h >> U32(16))
    h = h * U32(FINAL_1)
    h = h ^ (h >> U32(13))
    h = h * U32(FINAL_2)
    return h ^ (h >> U32(16))


class _Ids:
    """User ids as a zero-padded byte matrix, hashed against many salts.

    `ids` are the ids as the scalar evaluator reads them: well-formed text (`as_text`),
    so that a lone surrogate hashes as U+FFFD and a split pair as its character, and
    the override lookups see the same text. ASCII ids, the usual case, are kept as given.
    """

    def __init__(self, ids: Sequence[str]) -> None:
        self.count = len(ids)
        joined = "".join(ids)
        if joined.isascii():
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=self.count)
        else:
            ids = [well_formed(i) for i in ids]
            joined = "".join(ids)
            lengths = np.fromiter((len(i.encode()) for i in ids), dtype=np.int64, count=self.count)
        self.ids = ids
        self.lengths = lengths
        self._cache: dict[int, npt.NDArray[np.uint32]] = {}
        buffer = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
        width = int(lengths.max(initial=0))
        # Gather the concatenated bytes into a zero-padded matrix, one row per id,
        # a column at a time (ids are short; the users are many).
        self.matrix = np.zeros((self.count, width), dtype=np.uint8)
        starts = np.cumsum(lengths) - lengths
        for column in range(width):
            present = lengths > column
            self.matrix[present, column] = buffer[starts[present] + column]

    def _words(self, shift: int) -> npt.NDArray[np.uint32]:
        """The ids as little-endian words, placed after `shift` zero bytes (cached)."""
        if shift not in self._cache:
            width = shift + self.matrix.shape[1]
            data = np.zeros((self.count, width + (-width % 4)), dtype=np.uint8)
            data[:, shift:width] = self.matrix
            self._cache[shift] = data.view("<u4").astype(np.uint32)
        return self._cache[shift]

    def murmur3(self, salt_and_slash: str, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.uint32]:
        """murmur3_x86_32(salt + "/" + id) for the users at `rows`."""
        prefix = utf8(salt_and_slash)
        aligned = len(prefix) - len(prefix) % 4
        head = prefix[aligned:]
        words = self._words(len(head))[rows]
        # The salt's last bytes share the first word with the id's first bytes.
        words[:, 0] |= U32(int.from_bytes(head, "little"))
        total = self.lengths[rows] + len(prefix)
        full_blocks = (total - aligned) // 4
        h = np.full(len(rows), blocks_state(prefix[:aligned]), dtype=np.uint32)
        with np.errstate(over="ignore"):
            every_row_full = int(full_blocks.min(initial=0))
            for j in range(words.shape[1]):
                k = _rotl(words[:, j] * _C1, 15) * _C2
                mixed = _rotl(h ^ k, 13) * U32(5) + U32(BLOCK_ADD)
                h = mixed if j < every_row_full else np.where(j < full_blocks, mixed, h)
            tail = np.nonzero(total % 4)[0]
            if tail.size:
                k = words[tail, full_blocks[tail]]
                h[tail] ^= _rotl(k * _C1, 15) * _C2
            h ^= total.astype(np.uint32)
            return _fmix(h)


@dataclass
class Assignment:
    """Per flag, an index into that flag's table of possible results for every user."""

    keys: list[str]
    codes: dict[str, npt.NDArray[np.int32]]
    tables: dict[str, list[Result]]

    def results(self, key: str) -> list[Result]:
        table = self.tables[key]
        return [table[code] for code in self.codes[key]]

    def variants(self, key: str) -> npt.NDArray[Any]:
        names = np.array([r.variant for r in self.tables[key]], dtype=object)
        return names[self.codes[key]]


def _condition(
    predicate: Any, reads: frozenset[str], ids: Sequence[str], bys: Sequence[str]
) -> npt.NDArray[np.bool_] | bool:
    """A condition's answer for every user: one bool when it reads no bucketing attribute
    (these users have no other attribute), else one per user."""
    if not reads & set(bys):
        return safely(predicate, dict.fromkeys(bys, ""))
    return np.fromiter(
        (safely(predicate, dict.fromkeys(bys, i)) for i in ids), dtype=bool, count=len(ids)
    )


class _Column:
    """One flag's results for every user, filled in DESIGN §4's order: each step
    decides the users no earlier step decided."""

    def __init__(self, count: int) -> None:
        self.table: list[Result] = []
        self._positions: dict[int, int] = {}
        self.codes = np.full(count, -1, dtype=np.int32)
        self.undecided = np.ones(count, dtype=bool)

    def code_of(self, result: Result) -> int:
        if id(result) not in self._positions:
            self._positions[id(result)] = len(self.table)
            self.table.append(result)
        return self._positions[id(result)]

    def decide(self, mask: npt.NDArray[np.bool_] | bool, result: Result) -> None:
        chosen = self.undecided & mask
        self.codes[chosen] = self.code_of(result)
        self.undecided[chosen] = False

    def decide_rows(self, rows: Sequence[int], result: Result) -> None:
        for row in rows:
            if self.undecided[row]:
                self.codes[row] = self.code_of(result)
                self.undecided[row] = False


def _bucket(column: _Column, flag: PreparedFlag, hashed: _Ids) -> None:
    rows = np.nonzero(column.undecided)[0]
    if not rows.size:
        return
    h = hashed.murmur3(flag.prefix, rows)
    point = (h // U32(100)).astype(np.int64)
    index = np.searchsorted(np.array(flag.starts), point, side="right") - 1
    ends = np.array([*flag.ends, 0])
    inside = (index >= 0) & (point < ends[index])
    outcomes = [*flag.outcomes, UNALLOCATED, TRAFFIC]
    outcome_codes = np.array([column.code_of(o) for o in outcomes])
    chosen = np.where(inside, index, len(flag.outcomes))
    chosen[(h % U32(100)) >= flag.traffic] = len(flag.outcomes) + 1
    column.codes[rows] = outcome_codes[chosen]
    column.undecided[rows] = False


def assign(evaluator: Evaluator, ids: Sequence[str]) -> Assignment:
    flags = evaluator.prepared_flags
    bys = sorted({flag.by for flag in flags})
    hashed = _Ids(ids)
    ids = hashed.ids
    # Rows of the users some flag overrides by id: one pass over the ids for all flags.
    overridden = {user for flag in flags for user in flag.user_overrides}
    named: dict[str, list[int]] = {}
    if overridden:
        for row, user in enumerate(ids):
            if user in overridden:
                named.setdefault(user, []).append(row)
    columns: dict[str, _Column] = {}
    for flag in flags:
        column = columns[flag.key] = _Column(hashed.count)
        if not flag.serving:
            column.decide(True, NOT_RUNNING)
        for user, result in flag.user_overrides.items():
            column.decide_rows(named.get(user, []), result)
        for (holds, override), reads in zip(flag.cohort_overrides, flag.cohort_reads, strict=True):
            column.decide(_condition(holds, reads, ids, bys), override)
        for required, allowed, failed in flag.requires:
            earlier = columns[required]
            passing = np.array([r in allowed for r in earlier.table], dtype=bool)
            no_value = np.array([r is NO_BUCKETING_VALUE for r in earlier.table], dtype=bool)
            blocked = ~passing[earlier.codes]
            column.decide(blocked & no_value[earlier.codes], NO_BUCKETING_VALUE)
            column.decide(blocked, failed)
        if flag.targeting is not None:
            targeted = _condition(flag.targeting, flag.targeting_reads, ids, bys)
            column.decide(~np.asarray(targeted), TARGETING)
        if flag.rollout is not None:
            column.decide(True, flag.rollout)
        column.decide(hashed.lengths == 0, NO_BUCKETING_VALUE)
        _bucket(column, flag, hashed)
    return Assignment(
        [f.key for f in flags],
        {key: column.codes for key, column in columns.items()},
        {key: column.table for key, column in columns.items()},
    )


def share_enrolled(assignment: Assignment) -> Mapping[str, float]:
    """Share of the users each flag gives a variant, for quick offline summaries."""
    result = {}
    for key in assignment.keys:
        enrolled = np.array([r.variant is not None for r in assignment.tables[key]], dtype=bool)
        result[key] = (
            float(enrolled[assignment.codes[key]].mean()) if len(assignment.codes[key]) else 0.0
        )
    return result
