"""Expected shares of users, exactly, as fractions (DESIGN §4).

    share(E) = prod(1 - holdout%) * prod(share of E's slots along its group path) * traffic%

Shares are the declared basis points, not the rounded point ranges, so the two
examples of DESIGN §4 come out at exactly 25% and 47.5%.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from expc.pipeline.link import Catalog
from expc.pipeline.validate import slot_shares
from expc.reading.model import Experiment, Holdout, Mutex
from expc.sdk.bucketing import FULL, basis_points


def holdout_share(holdout: Holdout) -> Fraction:
    return Fraction(basis_points(holdout.percent), FULL)


def share_leading_to(catalog: Catalog, group_key: str, experiment_key: str) -> Fraction:
    """The share of a group's traffic whose slot leads to the experiment."""
    group = catalog.objects[group_key].definition
    assert isinstance(group, Mutex)
    above = catalog.groups_above(experiment_key)
    total = Fraction(0)
    for slot, share in zip(group.slots, slot_shares(group), strict=True):
        if slot.experiment == experiment_key:
            total += Fraction(share, FULL)
        elif slot.group is not None and slot.group in above:
            total += Fraction(share, FULL) * share_leading_to(catalog, slot.group, experiment_key)
    return total


def top_level_groups(catalog: Catalog, experiment_key: str) -> list[str]:
    return [g for g in catalog.groups_above(experiment_key) if g not in catalog.parent]


def group_factor(catalog: Catalog, experiment_key: str) -> Fraction:
    factor = Fraction(1)
    for root in top_level_groups(catalog, experiment_key):
        factor *= share_leading_to(catalog, root, experiment_key)
    return factor


def holdout_factor(catalog: Catalog, experiment_key: str) -> Fraction:
    factor = Fraction(1)
    for key in catalog.holdouts_covering(experiment_key):
        holdout = catalog.objects[key].definition
        assert isinstance(holdout, Holdout)
        factor *= 1 - holdout_share(holdout)
    return factor


def effective_share(catalog: Catalog, experiment_key: str) -> Fraction:
    """Expected share of all users the experiment enrols, before targeting.

    A concluded experiment with a rollout is outside mutual exclusion and traffic
    (DESIGN §2), so only its holdouts count.
    """
    experiment = catalog.objects[experiment_key].definition
    assert isinstance(experiment, Experiment)
    if experiment.state == "concluded" and experiment.rollout is not None:
        return holdout_factor(catalog, experiment_key)
    return (
        holdout_factor(catalog, experiment_key)
        * group_factor(catalog, experiment_key)
        * Fraction(experiment.traffic, 100)
    )


def effective_traffic(catalog: Catalog) -> dict[str, Fraction]:
    """Each experiment's expected share were it serving (DESIGN §4's formula)."""
    return {
        key: effective_share(catalog, key)
        for key, loaded in sorted(catalog.objects.items())
        if isinstance(loaded.definition, Experiment)
    }


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
        experiment = catalog.objects[key].definition
        assert isinstance(experiment, Experiment)
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


def format_share(share: Fraction) -> str:
    """A share as a percent with up to four decimals, trailing zeros dropped."""
    text = f"{float(share * 100):.4f}".rstrip("0").rstrip(".")
    return f"{text}%"
