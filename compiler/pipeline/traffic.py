"""Expected shares of users over a linked release, exactly (DESIGN §4): what feeds
`shares.expected_share` from the definitions, for `expc traffic`, lint and simulate.

The declared basis points are used, not the rounded point ranges, so the two examples
of DESIGN §4 come out at exactly 25% and 47.5%.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from expc.pipeline.link import Catalog
from expc.shares import basis_share, expected_share, holdout_share, slot_shares


def share_leading_to(catalog: Catalog, group_key: str, experiment_key: str) -> Fraction:
    """The share of a group's traffic whose slot leads to the experiment."""
    group = catalog.mutex(group_key)
    above = catalog.groups_above(experiment_key)
    total = Fraction(0)
    for slot, share in zip(group.slots, slot_shares(group), strict=True):
        if slot.experiment == experiment_key:
            total += basis_share(share)
        elif slot.group is not None and slot.group in above:
            total += basis_share(share) * share_leading_to(catalog, slot.group, experiment_key)
    return total


def top_level_groups(catalog: Catalog, experiment_key: str) -> list[str]:
    return [g for g in catalog.groups_above(experiment_key) if g not in catalog.parent]


def slot_paths(catalog: Catalog, experiment_key: str) -> list[Fraction]:
    """For each top-level group tree above the experiment, the share leading to it."""
    return [
        share_leading_to(catalog, root, experiment_key)
        for root in top_level_groups(catalog, experiment_key)
    ]


def held_out(catalog: Catalog, key: str) -> list[Fraction]:
    """The shares of the holdouts covering an experiment or a group."""
    return [holdout_share(catalog.holdout(h)) for h in catalog.holdouts_covering(key)]


def effective_share(catalog: Catalog, experiment_key: str) -> Fraction:
    """Expected share of all users the experiment enrols once it runs, before targeting."""
    experiment = catalog.experiment(experiment_key)
    return expected_share(
        traffic=Fraction(experiment.traffic, 100),
        held_out=held_out(catalog, experiment_key),
        slot_paths=slot_paths(catalog, experiment_key),
        rolled_out=experiment.state == "concluded" and experiment.rollout is not None,
    )


def group_reach(catalog: Catalog, group: str) -> Fraction:
    """The share of all users a group's draw applies to: those its holdouts (and those
    of the groups above it) keep in, within the slots above it when it is nested."""
    chain = catalog.group_chain(group)
    parents = [
        basis_share(slot_shares(catalog.mutex(parent))[slot])
        for parent, slot in (catalog.parent[g] for g in chain if g in catalog.parent)
    ]
    holdouts = dict.fromkeys(h for g in chain for h in catalog.holdouts_of.get(g, []))
    return expected_share(
        traffic=Fraction(1),
        held_out=[holdout_share(catalog.holdout(h)) for h in holdouts],
        slot_paths=parents,
    )


def effective_traffic(catalog: Catalog) -> dict[str, Fraction]:
    """Each experiment's expected share once it runs (DESIGN §4's formula)."""
    return {key: effective_share(catalog, key) for key in sorted(catalog.experiments())}


@dataclass(frozen=True)
class TrafficRow:
    """One line of `expc traffic`: what an experiment enrols now, before targeting."""

    key: str
    state: str
    share: Fraction  # of all users, now: 0 when it serves nobody
    if_running: Fraction  # what DESIGN §4's formula gives it once it runs
    serving: bool
    # With prerequisites the share also depends on the other experiment's targeting and
    # draws, so DESIGN §4's product is only an upper bound.
    at_most: bool


def traffic_rows(catalog: Catalog) -> list[TrafficRow]:
    rows = []
    for key, share in effective_traffic(catalog).items():
        experiment = catalog.experiment(key)
        rows.append(
            TrafficRow(
                key,
                experiment.state,
                share if experiment.serves else Fraction(0),
                share,
                experiment.serves,
                bool(experiment.prerequisites),
            )
        )
    return rows
