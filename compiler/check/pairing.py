"""Which previous state each environment of a change is judged against (DESIGN §10).

- An environment on both sides is compared with itself.
- When the previous side declares no environments, its one environment is the
  previous state of every environment of the current side: adopting environments
  never resets what is running or live.
- An environment the change adds is new: nothing ran in it, nothing is live. Its
  previous state is its own structure with every experiment a draft, so that rules
  about structure see no change and no enrolled user is assumed.
- An environment the change removes is left over (rule C126 judges it). A current
  side without environments is compared with the last (production-most) of the
  previous side's, and the others are removed.
- A released bundle file of one environment is the previous state of that
  environment alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from expc.check.previous import Side
from expc.check.views import View, expected_share, views
from expc.errors import UsageError
from expc.outputs.bundle_types import Bundle, Flag
from expc.shares import percent


@dataclass(frozen=True)
class Comparison:
    """One environment of the current side and the previous state it is judged by."""

    name: str | None  # None: the one environment of a release without them
    new: bool  # added by the change: nothing has run in it
    before: dict[str, View]
    after: dict[str, View]
    old_flags: dict[str, Flag]  # empty for a new environment
    new_flags: dict[str, Flag]
    live: frozenset[str]  # groups and holdouts the ledger records as live here

    def changed_objects(self) -> dict[str, list[str]]:
        """Keys added, removed and changed, by comparing the two bundles' flags."""
        old, new = self.old_flags, self.new_flags
        return {
            "added": sorted(set(new) - set(old)),
            "removed": sorted(set(old) - set(new)),
            "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
        }

    def affected_groups(self) -> list[str]:
        changed = self.changed_objects()
        touched = set(changed["added"]) | set(changed["removed"]) | set(changed["changed"])
        groups = set()
        for side in (self.before, self.after):
            for key in touched:
                view = side.get(key)
                if view is None:
                    continue
                if view.kind in ("mutex", "holdout"):
                    groups.add(key)
                groups.update(view.groups)
        return sorted(groups)

    def shares(self, group: str) -> list[tuple[str, str | None, str | None]]:
        """(experiment, share before, share after) for the experiments of a group."""
        members: set[str] = set()
        for side in (self.before, self.after):
            members.update(
                k
                for k, v in side.items()
                if v.kind == "experiment" and (group in v.groups or group in v.holdouts)
            )
        rows = []
        for key in sorted(members):
            old, new = self.before.get(key), self.after.get(key)
            rows.append(
                (
                    key,
                    percent(expected_share(old, self.before)) if old else None,
                    percent(expected_share(new, self.after)) if new else None,
                )
            )
        return rows


@dataclass(frozen=True)
class Removed:
    """An environment of the previous side that the current side no longer has."""

    name: str
    running: tuple[str, ...]  # experiments running there in the previous release


def pair(current: Side, previous: Side) -> tuple[list[Comparison], list[Removed]]:
    """A comparison for every environment of the current side that has a previous
    state to be judged by, and the previous side's environments that are gone."""
    history = previous.ledger
    names = current.names or (None,)
    earlier = previous.names
    if previous.snapshot is None and earlier:  # a released bundle of one environment
        if earlier[0] not in names:
            raise UsageError(
                f"{previous.label} is the bundle of environment '{earlier[0]}', which the "
                f"definitions do not declare (declared: {', '.join(current.names) or 'none'})"
            )
        names = (earlier[0],)
    comparisons = []
    for name in names:
        now = current.bundle(name)
        if not earlier:
            then: Bundle | None = previous.bundle(None)
        elif name in earlier:
            then = previous.bundle(name)
        elif name is None:  # environments dropped: the last one stands for the release
            then = previous.bundle(earlier[-1])
        else:
            then = None
        if then is None:
            comparisons.append(_new_environment(name, now))
            continue
        live_in = name if name in earlier else None
        comparisons.append(
            Comparison(
                name,
                new=False,
                before=views(then),
                after=views(now),
                old_flags={f["key"]: f for f in then["flags"]},
                new_flags={f["key"]: f for f in now["flags"]},
                live=history.live_keys(live_in),
            )
        )
    kept = set(names) if current.names else {earlier[-1]} if earlier else set()
    removed = [
        Removed(name, _running(previous.bundle(name)))
        for name in earlier
        if name not in kept and previous.snapshot is not None
    ]
    return comparisons, removed


def _new_environment(name: str | None, now: Bundle) -> Comparison:
    after = views(now)
    drafts = {
        key: dataclasses.replace(view, state="draft", rolled_out=False)
        if view.kind == "experiment"
        else view
        for key, view in after.items()
    }
    flags = {f["key"]: f for f in now["flags"]}
    return Comparison(name, True, drafts, after, {}, flags, frozenset())


def _running(bundle: Bundle) -> tuple[str, ...]:
    return tuple(
        sorted(
            f["key"]
            for f in bundle["flags"]
            if f["kind"] == "experiment" and f["state"] == "running"
        )
    )
