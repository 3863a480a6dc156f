"""One home for shares of users (DESIGN §3, §4): the shares a definition declares, the
expected share of an experiment, and how a share is written as a percent.

Declared shares are basis points (percent x 100, integers), so no float ever decides a
range. The expected share of an experiment is one formula,

    share(E) = prod(1 - holdout share) * prod(share of E's slots, per group tree) * traffic

fed with the declared basis points where the definitions are at hand (so DESIGN §4's
examples come out at exactly 25% and 47.5%), and with the point ranges of a bundle
where only a released bundle is (`expc check --against bundle.json`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from expc.reading.model import Experiment, Holdout, Mutex
from expc.sdk.bucketing import FULL, basis_points, fill_shares


def variant_shares(experiment: Experiment) -> list[int]:
    """Each variant's share in basis points; omitted weights split the rest."""
    return fill_shares([_declared(v.weight) for v in experiment.variants])


def slot_shares(group: Mutex) -> list[int]:
    """Each slot's share in basis points; omitted percents split the rest."""
    return fill_shares([_declared(s.percent) for s in group.slots])


def _declared(percent: Decimal | None) -> int | None:
    return None if percent is None else basis_points(percent)


def holdout_share(holdout: Holdout) -> Fraction:
    """The share a holdout keeps out."""
    return Fraction(basis_points(holdout.percent), FULL)


def basis_share(bp: int) -> Fraction:
    return Fraction(bp, FULL)


def expected_share(
    *,
    traffic: Fraction,
    held_out: Iterable[Fraction] = (),
    slot_paths: Iterable[Fraction] = (),
    rolled_out: bool = False,
) -> Fraction:
    """DESIGN §4: the share of all users an experiment enrols, before targeting.

    `held_out` are the shares of the holdouts covering it, `slot_paths` the share of
    each top-level group tree whose draw leads to it. A concluded experiment with a
    rollout is outside mutual exclusion and traffic (DESIGN §2): only holdouts count.
    """
    share = Fraction(1)
    for held in held_out:
        share *= 1 - held
    if rolled_out:
        return share
    for path in slot_paths:
        share *= path
    return share * traffic


def percent(share: Fraction, places: int = 2, trim: bool = False) -> str:
    """A share as a percent: `50.00%` (messages of rules and validation), or with
    `trim` up to four decimals without trailing zeros, `47.5%` (shares of users)."""
    if trim:
        text = f"{float(share * 100):.4f}".rstrip("0").rstrip(".")
        return f"{text}%"
    return f"{float(share * 100):.{places}f}%"
