"""The simulation behind `shares` and `exclusive`: synthetic users evaluated against
one environment's bundle, as `expc simulate` does it (ids `sim-0`, `sim-1`, ..., every
bucketing attribute set to the id, targeting off: DESIGN §4's shares are before
targeting), so a run is reproducible and its shares are the ones `expc traffic` and
`expc simulate` print.

Only the flags the checks name are evaluated, with the flags they require; one run
serves every check of every spec of an environment, so the holdouts and groups that
several specs reach are evaluated once per user.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expc.outputs.bundle_types import Bundle, Flag
from expc.pipeline.parallel import helper_pool, worker_count
from expc.sdk.evaluate import Evaluator

# Users listed by name in a failure of `exclusive`; the count says how many there are.
LISTED = 3


@dataclass(frozen=True)
class Overlap:
    """The simulated users in two or more experiments of one `exclusive` list."""

    users: int
    first: tuple[tuple[str, tuple[str, ...]], ...]  # (id, the experiments it is in)


@dataclass(frozen=True)
class Counts:
    users: int
    variants: Mapping[str, Mapping[str | None, int]]  # flag -> variant -> users
    overlaps: Mapping[tuple[str, ...], Overlap]
    # What the users were evaluated with, to explain one of them again.
    evaluator: Evaluator
    flags: Mapping[str, Flag]
    attributes: tuple[str, ...]

    def enrolled(self, flag: str) -> int:
        return sum(n for variant, n in self.variants[flag].items() if variant is not None)

    def user(self, user_id: str) -> dict[str, str]:
        """A simulated user: every bucketing attribute set to its id."""
        return dict.fromkeys(self.attributes, user_id)


def needed(flags: Sequence[Flag], keys: Collection[str]) -> list[Flag]:
    """The named flags and every flag they require, in bundle order, targeting off."""
    by_key = {flag["key"]: flag for flag in flags}
    wanted: set[str] = set()
    pending = list(keys)
    while pending:
        key = pending.pop()
        if key not in wanted:
            wanted.add(key)
            pending.extend(r["flag"] for r in by_key[key]["requires"])
    # A copy without targeting: what DESIGN §4's shares are measured on.
    return [Flag(**{**flag, "targeting": None}) for flag in flags if flag["key"] in wanted]


class Simulations:
    """One run per environment, made when its first check asks for it, over every flag
    and list the checks of all its specs name (`wanted`)."""

    def __init__(
        self,
        users: int,
        wanted: Mapping[str | None, tuple[Collection[str], Collection[tuple[str, ...]]]],
    ) -> None:
        self.users = users
        self._wanted = wanted
        self._runs: dict[str | None, Counts] = {}

    def counts(self, environment: str | None, bundle: Bundle) -> Counts:
        if environment not in self._runs:
            keys, exclusive = self._wanted[environment]
            flags = needed(bundle["flags"], {*keys, *(k for group in exclusive for k in group)})
            document: dict[str, Any] = {**bundle, "flags": flags}
            self._runs[environment] = _run(document, sorted(keys), sorted(exclusive), self.users)
        return self._runs[environment]


# Combinations of variants -> [users, then the indices of the first LISTED of them].
Combinations = dict[tuple[str | None, ...], list[int]]
# Below this many users a second process costs more than it saves: starting it and
# preparing its evaluator take a few tens of milliseconds (25 ms measured for the pool
# alone on 2 cores), 10,000 users of the example about a tenth of a second.
PARALLEL_USERS = 20_000


def _run(
    bundle: Mapping[str, Any], keys: list[str], lists: list[tuple[str, ...]], users: int
) -> Counts:
    evaluator = Evaluator.from_compiled(bundle)
    flags: list[Flag] = bundle["flags"]
    attributes = tuple(sorted({flag["bucketing"]["by"] for flag in flags}))
    watched = tuple(sorted({*keys, *(key for group in lists for key in group)}))
    combinations = _counted_on_every_core(bundle, evaluator, attributes, watched, users)
    tallies: dict[str, dict[str | None, int]] = {key: {} for key in keys}
    for variants, (count, *_first) in combinations.items():
        for key in keys:
            variant = variants[watched.index(key)]
            tallies[key][variant] = tallies[key].get(variant, 0) + count
    overlaps = {group: _overlap(group, watched, combinations) for group in lists}
    by_key = {flag["key"]: flag for flag in flags}
    return Counts(users, tallies, overlaps, evaluator, by_key, attributes)


def _counted_on_every_core(
    bundle: Mapping[str, Any],
    evaluator: Evaluator,
    attributes: tuple[str, ...],
    watched: tuple[str, ...],
    users: int,
) -> Combinations:
    """`_counted` over all users, the ids split into one contiguous range per core:
    evaluating the simulated users is most of `expc test`'s time. This process counts
    the first range while helpers count the others; only the counts come back."""
    workers = min(worker_count(), users // (PARALLEL_USERS // 2))
    if workers < 2 or users < PARALLEL_USERS:
        return _counted(evaluator, attributes, watched, range(users))
    size = -(-users // workers)
    ranges = [range(start, min(start + size, users)) for start in range(0, users, size)]
    with helper_pool(len(ranges) - 1) as pool:
        pending = [
            pool.submit(_counted_in_helper, dict(bundle), attributes, watched, part)
            for part in ranges[1:]
        ]
        parts = [_counted(evaluator, attributes, watched, ranges[0])]
        parts += [future.result() for future in pending]
    combinations: Combinations = {}
    for part in parts:  # in the order of the ids, so the first users stay first
        for variants, (count, *first) in part.items():
            merged = combinations.setdefault(variants, [0])
            merged[0] += count
            merged += first[: LISTED + 1 - len(merged)]
    return combinations


def _counted_in_helper(
    bundle: dict[str, Any], attributes: tuple[str, ...], watched: tuple[str, ...], ids: range
) -> Combinations:
    return _counted(Evaluator.from_compiled(bundle), attributes, watched, ids)


def _counted(
    evaluator: Evaluator, attributes: tuple[str, ...], watched: tuple[str, ...], ids: range
) -> Combinations:
    """Each user's variants of the watched flags, counted by combination: one tuple and
    one dict update per user, instead of a loop over the flags in Python (that loop was
    a quarter of `expc test`). The first users of each combination are kept, for the
    users an `exclusive` failure names."""
    combinations: Combinations = {}
    evaluate = evaluator.evaluate
    for index in ids:
        results = evaluate(dict.fromkeys(attributes, f"sim-{index}"))
        variants = tuple([results[key].variant for key in watched])
        seen = combinations.get(variants)
        if seen is None:
            combinations[variants] = [1, index]
        else:
            seen[0] += 1
            if len(seen) <= LISTED:
                seen.append(index)
    return combinations


def _overlap(
    group: tuple[str, ...], watched: tuple[str, ...], combinations: Combinations
) -> Overlap:
    """The users enrolled in two or more of `group`, from the counted combinations."""
    positions = [watched.index(key) for key in group]
    users = 0
    first: list[tuple[int, tuple[str, ...]]] = []
    for variants, (count, *indices) in combinations.items():
        inside = tuple(group[i] for i, p in enumerate(positions) if variants[p] is not None)
        if len(inside) > 1:
            users += count
            first += [(index, inside) for index in indices]
    named = tuple((f"sim-{index}", inside) for index, inside in sorted(first)[:LISTED])
    return Overlap(users, named)
