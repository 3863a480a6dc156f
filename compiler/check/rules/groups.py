"""Rules on mutex groups and holdouts once they are live."""

from __future__ import annotations

from collections.abc import Iterator

from expc.check.rules import Change, Changed, Context, Removed, rule
from expc.check.views import View, range_share, share_changed
from expc.diagnostics import Severity
from expc.shares import percent

ERROR = Severity.ERROR


@rule("C101", "live-group-slots-changed", ERROR, ("mutex",), on=Changed)
def live_group_slots_changed(pair: Changed, context: Context) -> Iterator[Change]:
    """A live group's slot count, slot percents or order changed.

    Users are placed in slots by their point; moving a boundary moves every user
    between the old and the new boundary into another slot, out of the experiment
    they were in.

    breaks:
        slots: [{percent: 50, experiment: a}, {percent: 50, experiment: b}]
        -> slots: [{percent: 40, experiment: a}, {percent: 60, experiment: b}]
    instead:
        keep the live slots as they are and give new experiments the free share or a
        new group; to rebalance, end the experiments and start a new group.
    """
    key, before, after = pair.key, pair.before, pair.after
    if not context.is_live(key):
        return
    if before.ranges != after.ranges:
        moved = share_changed(before.ranges, after.ranges)
        what = (
            f"its slot percents ({_slots(before)} -> {_slots(after)})"
            if len(before.ranges) == len(after.ranges)
            else f"its slots from {len(before.ranges)} to {len(after.ranges)} "
            f"({_slots(before)} -> {_slots(after)})"
        )
        yield Change(
            f"live group '{key}' changed {what}; this re-buckets {percent(moved)} of the "
            "group's users into other slots",
            [list(r) for r in before.ranges],
            [list(r) for r in after.ranges],
        )


@rule("C102", "live-group-bucketing-changed", ERROR, ("mutex", "holdout"), on=Changed)
def live_group_bucketing_changed(pair: Changed, context: Context) -> Iterator[Change]:
    """A live group's or holdout's bucketing attribute or salt changed.

    A new salt or attribute is a new draw: every user lands somewhere new, so about
    everyone enrolled moves to another slot, or in and out of the holdout.

    breaks:
        bucketing: {salt: checkout-v1} -> bucketing: {salt: checkout-v2}
    instead:
        keep the bucketing of a live group; start a new group for a new draw.
    """
    key, before, after = pair.key, pair.before, pair.after
    if not context.is_live(key):
        return
    if before.bucketing != after.bucketing:
        yield Change(
            f"live {before.kind} '{key}' changed its bucketing from by {before.by}, salt "
            f"{before.salt} to by {after.by}, salt {after.salt}; every user is drawn anew",
            list(before.bucketing),
            list(after.bucketing),
        )


@rule("C103", "live-holdout-percent-changed", ERROR, ("holdout",), on=Changed)
def live_holdout_percent_changed(pair: Changed, context: Context) -> Iterator[Change]:
    """A live holdout's percent changed.

    Growing it takes enrolled users out of every experiment it covers; shrinking it
    releases held-out users into experiments, ending the long-run comparison.

    breaks:
        percent: 5 -> percent: 10
    instead:
        keep the percent of a live holdout; start a new holdout for a new share.
    """
    key, before, after = pair.key, pair.before, pair.after
    if not context.is_live(key):
        return
    held_before = range_share(before.ranges, {"holdout"})
    held_after = range_share(after.ranges, {"holdout"})
    if held_before != held_after:
        moved = share_changed(before.ranges, after.ranges)
        yield Change(
            f"live holdout '{key}' changed from {percent(held_before)} to "
            f"{percent(held_after)} held out; this moves {percent(moved)} of its users "
            "in or out of the holdout",
            percent(held_before),
            percent(held_after),
        )


@rule("C104", "group-deleted-while-running", ERROR, ("mutex", "holdout"), on=Removed)
def group_deleted_while_running(pair: Removed, context: Context) -> Iterator[Change]:
    """A group or holdout was deleted while one of its members runs.

    Without the group its experiments' users are no longer kept apart (or held out):
    they start overlapping with the other members at once.

    breaks:
        deleting groups/checkout.yaml while checkout-redesign is running
    instead:
        stop or conclude its running members first, then delete the group.
    """
    key, before = pair.key, pair.before
    running = sorted(
        member
        for member, view in context.current.items()
        if view.running and context.has_run(member) and _was_member(key, member, context)
    )
    if running:
        yield Change(
            f"{before.kind} '{key}' was deleted while {', '.join(running)} "
            f"{'is' if len(running) == 1 else 'are'} running",
            running,
            None,
        )


def _was_member(group: str, member: str, context: Context) -> bool:
    view = context.previous.get(member)
    return view is not None and (group in view.groups or group in view.holdouts)


def _slots(view: View) -> str:
    return "/".join(percent(range_share(((n, s, e),))) for n, s, e in view.ranges)
