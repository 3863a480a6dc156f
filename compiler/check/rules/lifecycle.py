"""Rules on the life of objects across releases: states, deletion, reuse, carry-over."""

from __future__ import annotations

from collections.abc import Iterator

from expc.check.rules import (
    Added,
    Change,
    Changed,
    Context,
    Present,
    ReleaseFacts,
    Removed,
    release_rule,
    rule,
)
from expc.diagnostics import Severity
from expc.reading.model import RAN

ERROR = Severity.ERROR
# state before -> states it may not become
FORBIDDEN = {
    "running": {"draft"},
    "stopped": {"running", "draft"},
    "concluded": {"running", "draft", "stopped"},
}


@rule("C120", "running-experiment-deleted", ERROR, ("experiment",), on=Removed)
def running_experiment_deleted(pair: Removed, context: Context) -> Iterator[Change]:
    """A running experiment was deleted.

    SDKs drop it at once: enrolled users lose their variant mid-flight, and its key
    and salt can never be used again.

    breaks:
        deleting experiments/checkout-redesign.yaml while it is running
    instead:
        set state: stopped (or concluded with a rollout); delete it in a later change.
    """
    if pair.before.running:
        yield Change(f"running experiment '{pair.key}' was deleted", pair.before.state, None)


@rule("C121", "illegal-state-change", ERROR, ("experiment",), on=Changed)
def illegal_state_change(pair: Changed, context: Context) -> Iterator[Change]:
    """An experiment's state went backwards: running -> draft, stopped -> running,
    concluded -> running (or any move out of concluded but to itself).

    A restarted experiment mixes users from two periods, and a draft that ran hides
    that it ever did.

    breaks:
        state: stopped -> state: running
    instead:
        start a new experiment with a new key (and salt) for another run.
    """
    key, before, after = pair.key, pair.before, pair.after
    if after.state in FORBIDDEN.get(before.state, set()):
        yield Change(
            f"experiment '{key}' went from {before.state} to {after.state}, which is not allowed",
            before.state,
            after.state,
        )


@rule("C122", "retired-key-or-salt-reused", ERROR, ("experiment", "mutex", "holdout"), on=Added)
def retired_key_or_salt_reused(pair: Added, context: Context) -> Iterator[Change]:
    """A new object reuses a key or a salt that an earlier release used (the ledger
    remembers them after the object is deleted).

    SDK caches, analysis tables and exposure logs keyed by the old object would mix
    with the new one; a reused salt repeats an old draw exactly.

    breaks:
        a new experiments/checkout-redesign.yaml after the old one was deleted
    instead:
        choose a new key (e.g. checkout-redesign-2) and leave the salt to default.
    """
    key, after = pair.key, pair.after
    if key in context.released_keys:
        yield Change(f"'{key}' was released before and retired; choose a new key", key, key)
    owner = context.released_salts.get(after.salt)
    if owner is not None and owner != key:
        yield Change(
            f"'{key}' hashes with salt '{after.salt}', which '{owner}' used in an earlier "
            "release; choose a new salt",
            owner,
            after.salt,
        )


@rule("C123", "slot-carry-over", Severity.WARNING, ("experiment",), on=Present)
def slot_carry_over(pair: Present, context: Context) -> Iterator[Change]:
    """A new experiment was placed in a slot whose earlier member ran.

    The slot's users were exposed to the earlier experiment; its effects can carry
    over into the new one's results.

    breaks:
        slot 2 of checkout-group: checkout-old (ran) -> checkout-new
    instead:
        use a slot no experiment has run in, or accept knowingly and mention the
        carry-over in the analysis.
    """
    key, before, after = pair.key, pair.before, pair.after
    if before is not None and before.groups == after.groups:
        return
    for group, slots in sorted(after.groups.items()):
        if before is not None and before.groups.get(group) == slots:
            continue
        previous_group = context.previous.get(group)
        if previous_group is None:
            continue
        earlier = sorted(
            member
            for slot in slots
            for member in previous_group.members.get(slot, frozenset())
            if member != key
            and context.has_run(member)
            and _left_slot(member, group, slot, context)
        )
        if earlier:
            yield Change(
                f"'{key}' takes {', '.join(slots)} of '{group}', where {', '.join(earlier)} "
                "ran: its users carry that exposure",
                earlier,
                [group, list(slots)],
            )


def _left_slot(member: str, group: str, slot: str, context: Context) -> bool:
    now = context.current.get(member)
    return now is None or slot not in now.groups.get(group, ()) or now.state in RAN - {"running"}


@release_rule("C126", "environment-removed-while-running", ERROR, acceptable=True)
def environment_removed_while_running(facts: ReleaseFacts) -> Iterator[Change]:
    """An environment was removed from project.yaml while experiments run in it.

    Its bundle is no longer compiled or published: SDKs that poll it keep serving
    the last one they fetched (or fail to start), and its enrolled users can never
    be concluded or stopped through expc again.

    breaks:
        environments: [staging, production] -> environments: [production]
        while checkout-redesign runs in staging
    instead:
        stop the experiments in that environment (`environments: {staging: {state:
        stopped}}`), release, point its services elsewhere, then remove it.
    """
    for name, running, span in facts.removed_environments:
        if running:
            shown = ", ".join(running[:5]) + (f" and {len(running) - 5} more" * bool(running[5:]))
            yield Change(
                f"environment '{name}' was removed while {len(running)} experiment(s) run "
                f"in it ({shown}); stop them there first",
                [name, list(running)],
                None,
                about="project",
                span=span,
            )


@release_rule("C124", "ledger-edited", ERROR)
def ledger_edited(facts: ReleaseFacts) -> Iterator[Change]:
    """The change edits or drops past entries of generated/ledger.json, deletes it, or
    leaves it unreadable.

    The ledger is how expc remembers retired keys and salts and live groups after
    their objects are gone; editing it would let a change skip the checks that depend
    on it.

    breaks:
        removing "checkout-redesign" from ledger.json to reuse the key
    instead:
        leave the ledger to `expc compile`, which only appends.
    """
    if facts.ledger_problem is not None:
        problem, span = facts.ledger_problem
        yield Change(problem, problem, None, span=span)
    if facts.ledger_edits:
        yield Change(
            "generated/ledger.json edits past entries: " + ", ".join(facts.ledger_edits),
            list(facts.ledger_edits),
            None,
        )


@release_rule("C125", "unused-acknowledgement", Severity.WARNING)
def unused_acknowledgement(facts: ReleaseFacts) -> Iterator[Change]:
    """An acknowledgement matches no finding of this change.

    Either the change it accepted was edited (so its fingerprint is stale and the
    finding is blocking again) or it is left over from an earlier change.

    breaks:
        acknowledge: [{rule: C112, fingerprint: 0123456789abcdef, reason: ...}] with no
        such finding
    instead:
        remove it, or paste the new snippet the failing check printed.
    """
    for owner, rule_name, fingerprint in facts.unused_acknowledgements:
        yield Change(
            f"acknowledgement of {rule_name} ({fingerprint}) in '{owner}' matches nothing; "
            "remove it or replace it with the snippet the check prints",
            [owner, rule_name, fingerprint],
            None,
            about=owner,
        )
