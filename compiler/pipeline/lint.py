"""Checks across objects once the graph is linked: group trees, coverage, salts, traffic."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from fractions import Fraction

from expc import codes
from expc.diagnostics import Diagnostic, make
from expc.pipeline.link import Catalog
from expc.pipeline.traffic import effective_share, share_leading_to, top_level_groups
from expc.reading.model import Experiment, Holdout, Mutex, Project, salt_of
from expc.shares import percent


def lint(catalog: Catalog, project: Project | None) -> Iterator[Diagnostic]:
    yield from _group_trees(catalog)
    yield from _holdout_coverage(catalog)
    yield from _shared_salts(catalog)
    yield from _prerequisites_not_serving(catalog)
    if project is not None and project.warn_below_traffic is not None:
        yield from _low_traffic(catalog, Fraction(project.warn_below_traffic) / 100)


def _group_trees(catalog: Catalog) -> Iterator[Diagnostic]:
    for key in sorted(catalog.slots_of):
        loaded = catalog.objects[key]
        direct_groups = sorted({group for group, _slot in catalog.slots_of[key]})
        roots: dict[str, list[str]] = {}
        for group in direct_groups:
            roots.setdefault(catalog.group_chain(group)[-1], []).append(group)
        for root, groups in sorted(roots.items()):
            if len(groups) > 1:
                yield make(
                    codes.TWICE_IN_GROUP_TREE,
                    f"experiment '{key}' sits in groups {', '.join(groups)}, all inside "
                    f"group '{root}'; give it slots in one of them only",
                    loaded.span("key"),
                )
        tops = top_level_groups(catalog, key)
        if len(tops) > 1:
            share = Fraction(1)
            for root in tops:
                share *= share_leading_to(catalog, root, key)
            yield make(
                codes.MULTIPLE_GROUPS,
                f"experiment '{key}' is in {len(tops)} mutex groups ({', '.join(tops)}), "
                f"drawn independently: it can enrol only {percent(share, trim=True)} of users; "
                "to give it that share, use one group holding all of its members",
                loaded.span("key"),
            )


def _holdout_coverage(catalog: Catalog) -> Iterator[Diagnostic]:
    for key in sorted(catalog.objects):
        if not isinstance(catalog.objects[key].definition, Experiment):
            continue
        covering: Counter[str] = Counter()
        for target in [key, *catalog.groups_above(key)]:
            covering.update(catalog.holdouts_of.get(target, []))
        for holdout, times in sorted(covering.items()):
            if times > 1:
                yield make(
                    codes.HOLDOUT_TWICE,
                    f"holdout '{holdout}' covers experiment '{key}' {times} times (directly "
                    "and through groups); list it once",
                    catalog.objects[holdout].span("members"),
                )


def _prerequisites_not_serving(catalog: Catalog) -> Iterator[Diagnostic]:
    """An experiment that serves needs its prerequisites to serve too, or it enrols
    nobody (with environments: the prerequisite runs in staging, not in production)."""
    for key in sorted(catalog.experiments()):
        experiment = catalog.experiment(key)
        if not experiment.serves:
            continue
        for index, prerequisite in enumerate(experiment.prerequisites):
            if prerequisite.experiment not in catalog.objects:
                continue
            required = catalog.experiment(prerequisite.experiment)
            if not required.serves:
                yield make(
                    codes.PREREQUISITE_NOT_SERVING,
                    f"experiment '{key}' serves, but its prerequisite "
                    f"'{prerequisite.experiment}' is {required.state} and gives no variant: "
                    f"'{key}' enrols nobody; start '{prerequisite.experiment}' first, or "
                    f"keep '{key}' in draft",
                    catalog.objects[key].span("prerequisites", index, "experiment"),
                )


def _shared_salts(catalog: Catalog) -> Iterator[Diagnostic]:
    owners: dict[str, str] = {}
    for key in sorted(catalog.objects):
        definition = catalog.objects[key].definition
        if not isinstance(definition, Experiment | Mutex | Holdout):
            continue
        salt = salt_of(definition)
        first = owners.setdefault(salt, key)
        if first != key:
            yield make(
                codes.SHARED_SALT,
                f"'{key}' hashes with salt '{salt}', as '{first}' does: their draws are "
                "correlated; give it a salt of its own",
                catalog.objects[key].span("bucketing", "salt"),
            )


def _low_traffic(catalog: Catalog, threshold: Fraction) -> Iterator[Diagnostic]:
    for key in sorted(catalog.objects):
        definition = catalog.objects[key].definition
        if not isinstance(definition, Experiment) or definition.state in ("stopped", "concluded"):
            continue
        share = effective_share(catalog, key)
        if share < threshold:
            yield make(
                codes.LOW_TRAFFIC,
                f"experiment '{key}' can enrol only {percent(share, trim=True)} of users, "
                "under the project's warn_below_traffic of "
                f"{percent(threshold, trim=True)}; give it more slots or traffic",
                catalog.objects[key].span("key"),
            )
