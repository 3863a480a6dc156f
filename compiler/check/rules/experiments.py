"""Rules on running experiments: where they sit, how they draw, who they target."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

from expc.check.rules import Change, Changed, Context, rule, running_on_both_sides
from expc.check.views import View, range_share, share_changed
from expc.diagnostics import Severity
from expc.sdk.bucketing import POINTS
from expc.shares import percent

ERROR = Severity.ERROR


@rule(
    "C110",
    "running-experiment-group-changed",
    ERROR,
    ("experiment",),
    Changed,
    running_on_both_sides,
)
def running_experiment_group_changed(pair: Changed, context: Context) -> Iterator[Change]:
    """A running experiment was added to a group, removed from one, moved between
    slots, or gave up a slot (taking one more slot of a group it is already in only
    adds users: a notice, like a traffic raise).

    Added: the users outside its new slot leave it. Removed: it suddenly overlaps
    with the group's other experiments. Moved, or a slot given up: the users of the
    slot it leaves lose their variant.

    breaks:
        adding running experiment search-ranker to slot 2 of search-group
    instead:
        put new experiments into groups before they start; to change a running one's
        group, conclude it and start a successor in the group. To give a running
        experiment more users, let it take one more empty slot of its group.
    """
    key, before, after = pair.key, pair.before, pair.after
    if dict(before.groups) == dict(after.groups):
        return
    added = sorted(set(after.groups) - set(before.groups))
    removed = sorted(set(before.groups) - set(after.groups))
    common = sorted(set(before.groups) & set(after.groups))
    grown = [g for g in common if set(before.groups[g]) < set(after.groups[g])]
    shrunk = [g for g in common if set(before.groups[g]) > set(after.groups[g])]
    moved = [g for g in common if before.groups[g] != after.groups[g] and g not in grown + shrunk]
    parts = []
    if added:
        kept = _kept_share(after, added, context)
        parts.append(
            f"added to {', '.join(added)}: {percent(1 - kept)} of its enrolled users leave it"
        )
    if removed:
        parts.append(f"removed from {', '.join(removed)}: it now overlaps their other members")
    for group in shrunk:
        left = sorted(set(before.groups[group]) - set(after.groups[group]))
        leaving = 1 - _slots_share(context.previous, group, after.groups[group]) / (
            _slots_share(context.previous, group, before.groups[group]) or 1
        )
        parts.append(
            f"gave up {', '.join(left)} of {group}: {percent(leaving)} of its enrolled users "
            "leave it"
        )
    if moved:
        moves = ", ".join(f"{g} {list(before.groups[g])} -> {list(after.groups[g])}" for g in moved)
        parts.append(f"moved between slots ({moves}): its users are replaced")
    if parts:
        yield Change(
            f"running experiment '{key}' {'; '.join(parts)}",
            {g: list(s) for g, s in sorted(before.groups.items()) if g not in grown},
            {g: list(s) for g, s in sorted(after.groups.items()) if g not in grown},
            where=(*added, *moved, *shrunk, *removed),
        )
    for group in grown:
        taken = sorted(set(after.groups[group]) - set(before.groups[group]))
        yield Change(
            f"running experiment '{key}' takes {', '.join(taken)} of '{group}' besides "
            f"{', '.join(before.groups[group])}: safe, enrolled users keep their variant and "
            "new ones join",
            list(before.groups[group]),
            list(after.groups[group]),
            Severity.NOTICE,
            where=(group,),
        )


def _slots_share(views: dict[str, View], group: str, slots: tuple[str, ...]) -> Fraction:
    view = views.get(group)
    return range_share(view.ranges, set(slots)) if view is not None else Fraction(0)


def _kept_share(view: View, groups: list[str], context: Context) -> Fraction:
    kept = Fraction(1)
    for group in groups:
        group_view = context.current.get(group)
        if group_view is not None:
            kept *= range_share(group_view.ranges, set(view.groups[group]))
    return kept


@rule(
    "C111",
    "running-experiment-holdout-changed",
    ERROR,
    ("experiment",),
    Changed,
    running_on_both_sides,
)
def running_experiment_holdout_changed(pair: Changed, context: Context) -> Iterator[Change]:
    """A running experiment was added to a holdout or removed from one (a new holdout
    over a running experiment counts as adding it).

    Added: the held-out share of its enrolled users leaves it mid-flight. Removed:
    held-out users flow in, and the holdout stops measuring it.

    breaks:
        members: {experiments: [checkout-redesign]} on a holdout while it runs
    instead:
        cover experiments with holdouts before they start.
    """
    key, before, after = pair.key, pair.before, pair.after
    if before.holdouts == after.holdouts:
        return
    added = sorted(after.holdouts - before.holdouts)
    removed = sorted(before.holdouts - after.holdouts)
    leaving = Fraction(1)
    for holdout in added:
        holdout_view = context.current.get(holdout)
        if holdout_view is not None:
            leaving *= 1 - range_share(holdout_view.ranges, {"holdout"})
    parts = []
    if added:
        parts.append(
            f"added to {', '.join(added)}: {percent(1 - leaving)} of its enrolled users leave it"
        )
    if removed:
        parts.append(f"removed from {', '.join(removed)}: held-out users start to enter it")
    yield Change(
        f"running experiment '{key}' {'; '.join(parts)}",
        sorted(before.holdouts),
        sorted(after.holdouts),
        where=(*added, *removed),
    )


@rule(
    "C112",
    "running-experiment-bucketing-changed",
    ERROR,
    ("experiment",),
    Changed,
    running_on_both_sides,
)
def running_experiment_bucketing_changed(pair: Changed, context: Context) -> Iterator[Change]:
    """A running experiment's salt, bucketing attribute, variant set or weights
    changed.

    The variant a user gets is the range their point falls in; new ranges or a new
    draw give enrolled users another variant, mixing the groups being compared.

    breaks:
        variants: [{key: a, weight: 50}, {key: b, weight: 50}] -> weights 30 / 70
    instead:
        keep a running experiment's variants and weights; to change them, conclude it
        and start a new experiment (new key and salt).
    """
    key, before, after = pair.key, pair.before, pair.after
    if before.bucketing != after.bucketing:
        kept = sum((Fraction(e - s, POINTS) ** 2 for _, s, e in after.ranges), Fraction(0))
        yield Change(
            f"running experiment '{key}' changed its bucketing (by {before.by}, salt "
            f"{before.salt} -> by {after.by}, salt {after.salt}): every user is drawn "
            f"anew, about {percent(1 - kept)} of enrolled users change variant",
            list(before.bucketing),
            list(after.bucketing),
        )
    elif before.ranges != after.ranges:
        moved = share_changed(before.ranges, after.ranges)
        yield Change(
            f"running experiment '{key}' changed its variants or weights; this "
            f"re-buckets {percent(moved)} of enrolled users",
            [list(r) for r in before.ranges],
            [list(r) for r in after.ranges],
        )


@rule(
    "C113",
    "running-experiment-traffic-changed",
    ERROR,
    ("experiment",),
    Changed,
    running_on_both_sides,
)
def running_experiment_traffic_changed(pair: Changed, context: Context) -> Iterator[Change]:
    """A running experiment's traffic was lowered (raising it is safe, and reported
    as a notice).

    Traffic admits users whose alloc is below it; lowering it drops the enrolled users
    between the new and the old value. Raising it only adds users.

    breaks:
        traffic: 50 -> traffic: 20
    instead:
        keep or raise traffic while it runs; ramp down by stopping the experiment.
    """
    key, before, after = pair.key, pair.before, pair.after
    if after.traffic < before.traffic:
        leaving = Fraction(before.traffic - after.traffic, before.traffic)
        yield Change(
            f"running experiment '{key}' lowered traffic from {before.traffic}% to "
            f"{after.traffic}%: {percent(leaving)} of its enrolled users leave it",
            before.traffic,
            after.traffic,
        )
    elif after.traffic > before.traffic:
        yield Change(
            f"running experiment '{key}' raised traffic from {before.traffic}% to "
            f"{after.traffic}%: safe, enrolled users keep their variant",
            before.traffic,
            after.traffic,
            Severity.NOTICE,
        )


@rule(
    "C114",
    "running-experiment-targeting-changed",
    Severity.WARNING,
    ("experiment",),
    Changed,
    running_on_both_sides,
)
def running_experiment_targeting_changed(pair: Changed, context: Context) -> Iterator[Change]:
    """A running experiment's targeting or prerequisites changed.

    Users who no longer match leave the experiment, new ones enter part way through;
    results before and after the change describe different populations.

    breaks:
        targeting on country [NO, SE] -> [NO, SE, DK] while running
    instead:
        settle targeting before starting, or accept knowingly and analyse the periods
        apart.
    """
    key, before, after = pair.key, pair.before, pair.after
    changed = [
        what
        for what, old, new in (
            ("targeting", before.targeting, after.targeting),
            ("prerequisites", before.prerequisites, after.prerequisites),
        )
        if old != new
    ]
    if changed:
        yield Change(
            f"running experiment '{key}' changed its {' and '.join(changed)}; enrolled "
            "users may leave and new ones enter part way",
            [before.targeting, [list(p) for p in before.prerequisites]],
            [after.targeting, [list(p) for p in after.prerequisites]],
        )
