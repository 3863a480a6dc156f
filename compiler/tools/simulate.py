"""`expc simulate`: evaluate synthetic users and compare observed with expected shares.

Users are `sim-0`, `sim-1`, ... with every bucketing attribute set to that id and no
other attribute, and targeting is switched off for the run: the simulation measures
bucketing (DESIGN §4's expected shares are "before targeting"). Experiments with
prerequisites are shown without an expectation, since theirs depends on the other
experiment's targeting.

Each share gets a Wilson score interval at z = 4 (about 6 in 100,000 two-sided), wide
enough that a correct bundle fails by chance about once in a few hundred runs of the
example, and narrow enough to catch a range that is off by a fraction of a percent.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from expc.outputs.bundle_types import Bundle
from expc.pipeline.link import Catalog
from expc.pipeline.traffic import effective_share, group_reach
from expc.reading.model import Experiment, Holdout, Mutex
from expc.sdk.bucketing import FULL
from expc.sdk.evaluate import Evaluator
from expc.shares import holdout_share, slot_shares

Z = 4.0


@dataclass(frozen=True)
class Share:
    key: str
    what: str
    observed: int
    total: int
    expected: Fraction | None

    @property
    def share(self) -> float:
        return self.observed / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson score interval for the observed share."""
        n, p = self.total, self.share
        if n == 0:
            return 0.0, 1.0
        centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
        spread = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
        # At p = 0 and p = 1 the Wilson bound is exactly 0 or 1; floating point lands a
        # hair inside, which would call an expected 100% "outside" 100% observed.
        low = 0.0 if self.observed == 0 else max(0.0, centre - spread)
        high = 1.0 if self.observed == n else min(1.0, centre + spread)
        return low, high

    @property
    def ok(self) -> bool:
        if self.expected is None:
            return True
        low, high = self.interval
        return low <= float(self.expected) <= high


@dataclass(frozen=True)
class Simulation:
    users: int
    shares: list[Share]
    violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations and all(share.ok for share in self.shares)


def _without_targeting(bundle: Bundle) -> dict[str, Any]:
    flags = [{**flag, "targeting": None} for flag in bundle["flags"]]
    return {**bundle, "flags": flags}


def _experiments_below(catalog: Catalog, group: str) -> set[str]:
    return {key for key in catalog.slots_of if group in catalog.groups_above(key)}


def simulate(catalog: Catalog, bundle: Bundle, users: int) -> Simulation:
    evaluator = Evaluator.from_compiled(_without_targeting(bundle))
    attributes = sorted({flag["bucketing"]["by"] for flag in bundle["flags"]})
    serving = {f["key"] for f in bundle["flags"] if f["kind"] == "experiment" and f["serving"]}
    counts: Counter[tuple[str, str | None]] = Counter()
    violations: list[str] = []
    groups = {k for k, o in catalog.objects.items() if isinstance(o.definition, Mutex)}
    members = {group: _experiments_below(catalog, group) & serving for group in groups}
    covered = {
        key: {e for e in serving if key in catalog.holdouts_covering(e)}
        for key, o in catalog.objects.items()
        if isinstance(o.definition, Holdout)
    }
    for index in range(users):
        user_id = f"sim-{index}"
        results = evaluator.evaluate(dict.fromkeys(attributes, user_id))
        for key, result in results.items():
            counts[key, result.variant] += 1
            if result.variant is not None and key in serving:
                counts[key, "*"] += 1
        for group, experiments in members.items():
            enrolled = sorted(e for e in experiments if results[e].variant is not None)
            if len(enrolled) > 1 and len(violations) < 20:
                violations.append(f"{user_id} is in {', '.join(enrolled)}, all in group {group}")
        for holdout, experiments in covered.items():
            if results[holdout].variant == "holdout":
                leaked = sorted(e for e in experiments if results[e].variant is not None)
                if leaked and len(violations) < 20:
                    violations.append(
                        f"{user_id} is held out by {holdout} but in {', '.join(leaked)}"
                    )
    return Simulation(users, _shares(catalog, counts, users, serving), violations)


def _shares(
    catalog: Catalog, counts: Counter[tuple[str, str | None]], users: int, serving: set[str]
) -> list[Share]:
    shares: list[Share] = []
    for key in sorted(catalog.objects):
        definition = catalog.objects[key].definition
        if isinstance(definition, Holdout):
            shares.append(
                Share(key, "held out", counts[key, "holdout"], users, holdout_share(definition))
            )
        elif isinstance(definition, Mutex):
            path_share = group_reach(catalog, key)
            for index, bp in enumerate(slot_shares(definition)):
                expected = path_share * Fraction(bp, FULL)
                shares.append(
                    Share(
                        key, f"slot-{index + 1}", counts[key, f"slot-{index + 1}"], users, expected
                    )
                )
        elif isinstance(definition, Experiment) and key in serving:
            share = None if definition.prerequisites else effective_share(catalog, key)
            shares.append(Share(key, "enrolled", counts[key, "*"], users, share))
    return shares
