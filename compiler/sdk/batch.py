"""Assign many users at once with numpy, for offline analysis (`pip install expc[batch]`).

    from expc.sdk.batch import assign
    assignment = assign(evaluator, ["user-1", "user-2", ...])
    assignment.variants("checkout-one-page")   # array of variant names, None when out
    assignment.results("checkout-one-page")    # the same Result objects as the evaluator

Users are bucketing values only (every `by` attribute set to the id, as in
`expc simulate`). The result is exactly what `Evaluator.evaluate` gives for each user,
flag by flag: the same steps of DESIGN §4, on whole arrays. Users are worked on sorted
by the length of their id (`expc.sdk.batch_murmur`), and put back in the caller's order
at the end. Conditions that read the bucketing attribute (cohorts of ids) are evaluated
per user; every other condition has one answer for all these users and is evaluated
once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from expc.sdk.batch_murmur import IdHashes
from expc.sdk.evaluate import (
    NO_BUCKETING_VALUE,
    NOT_RUNNING,
    TARGETING,
    TRAFFIC,
    Evaluator,
    PreparedFlag,
    Result,
    safely,
)
from expc.sdk.private import Private, digest_attribute

U32 = np.uint32


class _InCallersOrder(Mapping[str, npt.NDArray[np.int32]]):
    """Each flag's codes put back in the caller's order when first asked for: totals
    (`share_enrolled`) do not need the order, and reordering ten million codes at
    random costs a fifth of assigning them."""

    def __init__(self, by_length: dict[str, npt.NDArray[np.int32]], order: Any) -> None:
        self._by_length = by_length
        self._order = order
        self._done: dict[str, npt.NDArray[np.int32]] = {}

    def __getitem__(self, key: str) -> npt.NDArray[np.int32]:
        if key not in self._done:
            codes = np.empty(len(self._order), dtype=np.int32)
            codes[self._order] = self._by_length[key]
            self._done[key] = codes
        return self._done[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_length)

    def __len__(self) -> int:
        return len(self._by_length)

    def unordered(self, key: str) -> npt.NDArray[np.int32]:
        """The codes in no particular order, for totals."""
        return self._by_length[key]


@dataclass
class Assignment:
    """Per flag, an index into that flag's table of possible results for every user:
    `tables[key][codes[key][row]]` is the result of the user `ids[row]`."""

    keys: list[str]
    codes: Mapping[str, npt.NDArray[np.int32]]
    tables: dict[str, list[Result]]

    def results(self, key: str) -> list[Result]:
        table = self.tables[key]
        return [table[code] for code in self.codes[key]]

    def variants(self, key: str) -> npt.NDArray[Any]:
        names = np.array([r.variant for r in self.tables[key]], dtype=object)
        return names[self.codes[key]]


class _Users:
    """The users as attribute mappings: every bucketing attribute set to the id, with
    the digests of the private ones (`expc.sdk.private`), made once for all conditions."""

    def __init__(self, hashed: IdHashes, bys: Sequence[str], private: Private | None) -> None:
        self.hashed = hashed
        self.bys = bys
        self.private = private
        hidden = private.attributes if private is not None else ()
        # What a condition reads when it reads the id: the attribute or its digest.
        self.id_reads = frozenset(bys) | {digest_attribute(b) for b in bys if b in hidden}
        self._all: list[Any] | None = None

    def one(self, value: str) -> Any:
        user = dict.fromkeys(self.bys, value)
        return user if self.private is None else self.private.with_digests(user)

    def all(self) -> list[Any]:
        if self._all is None:
            self._all = [self.one(i) for i in self.hashed.texts]
        return self._all


def _condition(
    predicate: Any, reads: frozenset[str], users: _Users
) -> npt.NDArray[np.bool_] | bool:
    """A condition's answer for every user: one bool when it reads no bucketing attribute
    (these users have no other attribute), else one per user."""
    if not reads & users.id_reads:
        return safely(predicate, users.one(""))
    people = users.all()
    return np.fromiter((safely(predicate, user) for user in people), dtype=bool, count=len(people))


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
        if mask is True:
            chosen = self.undecided
            self.undecided = np.zeros_like(chosen)
        elif mask is False:
            return
        else:
            chosen = self.undecided & mask
            self.undecided ^= chosen  # `chosen` lies inside `undecided`
        np.putmask(self.codes, chosen, self.code_of(result))

    def decide_rows(self, rows: Sequence[int], result: Result) -> None:
        for row in rows:
            if self.undecided[row]:
                self.codes[row] = self.code_of(result)
                self.undecided[row] = False


# Up to this many boundaries, counting the ones a hash reaches beats a binary search:
# a comparison is a fast pass over the hashes, `searchsorted` a slow one (4 slots: 3 ms
# against 19 ms for a million users).
_COMPARED_BOUNDS = 8


def _segment_of(h: npt.NDArray[np.uint32], bounds: list[int]) -> npt.NDArray[Any]:
    """For every hash, the index of the segment that holds it: how many of the sorted
    `bounds` it reaches."""
    if len(bounds) > _COMPARED_BOUNDS:
        return np.searchsorted(np.array(bounds, dtype=np.uint32), h, side="right")
    index = np.zeros(len(h), dtype=np.uint8)
    for bound in bounds:
        index += (h >= U32(bound)).view(np.uint8)
    return index


def _bucket(column: _Column, flag: PreparedFlag, hashed: IdHashes) -> None:
    rows = np.nonzero(column.undecided)[0]
    if not rows.size:
        return
    h = hashed.murmur3(flag.prefix, rows)
    # The ranges as runs of hash values (`PreparedFlag.segments`): one search per user,
    # no division. Every boundary but the outer ones fits in 32 bits.
    segments = flag.segments()
    bounds = [low for low, _high, _result in segments[1:]]
    outcomes = np.array([column.code_of(result) for *_, result in segments], dtype=np.int32)
    codes = outcomes.take(_segment_of(h, bounds))
    if flag.traffic < 100:
        codes[(h % U32(100)) >= flag.traffic] = column.code_of(TRAFFIC)
    column.codes[rows] = codes
    column.undecided[rows] = False


def assign(evaluator: Evaluator, ids: Sequence[str]) -> Assignment:
    flags = evaluator.prepared_flags
    bys = sorted({flag.by for flag in flags})
    hashed = IdHashes(ids)  # sorted by id length: every array below is in that order
    users = _Users(hashed, bys, evaluator.private)
    count = len(hashed.lengths)
    # Rows of the users some flag overrides by id: one pass over the ids for all flags.
    overridden = {user for flag in flags for user in flag.user_overrides}
    named: dict[str, list[int]] = {}
    if overridden:
        for row, user in enumerate(hashed.texts):
            if user in overridden:
                named.setdefault(user, []).append(row)
    no_id = hashed.lengths == 0
    columns: dict[str, _Column] = {}
    # (flag, allowed results) -> (users the requirement blocks, of whom those with no id).
    # Flags in one group or under one holdout ask the same: computed once.
    blocking: dict[tuple[str, frozenset[Result]], tuple[Any, Any]] = {}
    for flag in flags:
        column = columns[flag.key] = _Column(count)
        if not flag.serving:
            column.decide(True, NOT_RUNNING)
        for user, result in flag.user_overrides.items():
            column.decide_rows(named.get(user, []), result)
        for (holds, override), reads in zip(flag.cohort_overrides, flag.cohort_reads, strict=True):
            column.decide(_condition(holds, reads, users), override)
        for required, allowed, failed in flag.requires:
            if (required, allowed) not in blocking:
                earlier = columns[required]
                passing = np.array([r in allowed for r in earlier.table], dtype=bool)
                no_value = np.array([r is NO_BUCKETING_VALUE for r in earlier.table], dtype=bool)
                blocked = ~passing[earlier.codes]
                blocking[required, allowed] = (blocked, blocked & no_value[earlier.codes])
            blocked, blocked_without_id = blocking[required, allowed]
            column.decide(blocked_without_id, NO_BUCKETING_VALUE)
            column.decide(blocked, failed)
        if flag.targeting is not None:
            targeted = _condition(flag.targeting, flag.targeting_reads, users)
            column.decide(np.logical_not(targeted), TARGETING)
        if flag.rollout is not None:
            column.decide(True, flag.rollout)
        column.decide(no_id, NO_BUCKETING_VALUE)
        _bucket(column, flag, hashed)
    codes = _InCallersOrder({key: c.codes for key, c in columns.items()}, hashed.order)
    return Assignment([f.key for f in flags], codes, {k: c.table for k, c in columns.items()})


def share_enrolled(assignment: Assignment) -> Mapping[str, float]:
    """Share of the users each flag gives a variant, for quick offline summaries."""
    result = {}
    for key in assignment.keys:
        codes = assignment.codes[key]
        if isinstance(assignment.codes, _InCallersOrder):
            codes = assignment.codes.unordered(key)  # a share needs no order
        enrolled = np.array([r.variant is not None for r in assignment.tables[key]], dtype=bool)
        result[key] = float(enrolled[codes].mean()) if len(codes) else 0.0
    return result
