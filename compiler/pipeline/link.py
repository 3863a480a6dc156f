"""Linking one release: its dependency graph, a thin wrapper over `networkx.DiGraph`.

Edges run from what is evaluated first to what depends on it: holdout -> member,
group -> slot member, prerequisite -> dependent, cohort -> user of it. Each edge keeps
the references that made it (an experiment in two slots of a group: two), so a
diagnostic can point at the line that wrote it.

The networkx graph is built when something asks for it (the bundle's topological
order, a cycle to report hop by hop): networkx takes longer to import than the whole
rest of `expc validate`, which runs in every pre-commit and only needs to know that
there is no cycle, a question the standard library's `graphlib` answers.
"""

from __future__ import annotations

import enum
import functools
import graphlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from expc import codes
from expc.diagnostics import Diagnostic, Span, make
from expc.reading.load import Loaded, a_or_an, did_you_mean
from expc.reading.model import AllOf, AnyOf, Audience, Cohort, Condition, Experiment, Holdout, Mutex

Path = tuple[str | int, ...]
D = TypeVar("D", Experiment, Mutex, Holdout, Cohort)


class Relation(enum.Enum):
    """Why one object names another."""

    SLOT = "slot"  # a group names the experiment or group in one of its slots
    HOLDOUT_MEMBER = "holdout member"  # a holdout names an experiment or group it covers
    PREREQUISITE = "prerequisite"  # an experiment names one it depends on
    TARGETING = "targeting"  # conditions name a cohort
    AUDIENCE = "audience"  # overrides, pins or a holdout's lists name a cohort

    @property
    def upstream(self) -> bool:
        """Whether the named object is evaluated before the one naming it."""
        return self in (Relation.PREREQUISITE, Relation.TARGETING, Relation.AUDIENCE)


@dataclass(frozen=True)
class Reference:
    """`owner` names `target` (of one of `kinds`) at `path` in its file."""

    owner: Loaded
    target: str
    kinds: tuple[str, ...]
    path: Path
    relation: Relation
    slot: int | None = None  # for Relation.SLOT: the slot's index in the group

    @property
    def label(self) -> str:
        """The relation in words: "slot 3", "holdout member", "prerequisite"."""
        if self.slot is not None:
            return f"slot {self.slot + 1}"
        return self.relation.value

    @property
    def span(self) -> Span:
        return self.owner.span(*self.path)

    @property
    def edge(self) -> tuple[str, str]:
        owner = self.owner.definition.key
        return (self.target, owner) if self.relation.upstream else (owner, self.target)


@dataclass(frozen=True)
class GraphView:
    """The graph as data, for `expc graph`: nodes with their kind, and edges with what
    made them in words ("slots 2, 3" for an experiment holding two slots of a group)."""

    nodes: tuple[tuple[str, str], ...]
    edges: tuple[tuple[str, str, str], ...]


def _relation(references: list[Reference]) -> str:
    slots = [r.slot + 1 for r in references if r.slot is not None]
    if len(slots) > 1 and len(slots) == len(references):
        return "slots " + ", ".join(map(str, slots))
    return ", ".join(dict.fromkeys(r.label for r in references))


@dataclass
class Catalog:
    """All objects of a snapshot by key, their graph, and the group structure."""

    objects: dict[str, Loaded]
    nodes: dict[str, str] = field(default_factory=dict)  # key -> kind (not the project)
    # (from, to) -> the references that make the edge, in the order they were written
    edges: dict[tuple[str, str], list[Reference]] = field(default_factory=dict)
    # group key -> (parent group key, slot index in the parent)
    parent: dict[str, tuple[str, int]] = field(default_factory=dict)
    # experiment or group key -> the holdouts that name it as a member
    holdouts_of: dict[str, list[str]] = field(default_factory=dict)
    # experiment key -> [(group key, slot index)] of the groups holding it directly
    slots_of: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def group_chain(self, group: str) -> list[str]:
        """The group and its ancestors, innermost first."""
        chain = [group]
        while chain[-1] in self.parent and len(chain) <= len(self.parent) + 1:
            chain.append(self.parent[chain[-1]][0])
        return chain

    def groups_above(self, key: str) -> list[str]:
        """Every group an experiment sits in, directly or through nesting, in order."""
        seen: dict[str, None] = {}
        for group, _slot in self.slots_of.get(key, []):
            for ancestor in self.group_chain(group):
                seen.setdefault(ancestor)
        return list(seen)

    def holdouts_covering(self, key: str) -> list[str]:
        """Holdouts covering an experiment, directly or through any group above it."""
        seen: dict[str, None] = {}
        for target in [key, *self.groups_above(key)]:
            for holdout in self.holdouts_of.get(target, []):
                seen.setdefault(holdout)
        return sorted(seen)

    def _definition(self, key: str, kind: type[D]) -> D:
        definition = self.objects[key].definition
        if not isinstance(definition, kind):  # pragma: no cover - linking guarantees kinds
            raise TypeError(f"'{key}' is {definition.kind}, not {kind.__name__.lower()}")
        return definition

    def experiment(self, key: str) -> Experiment:
        return self._definition(key, Experiment)

    def mutex(self, key: str) -> Mutex:
        return self._definition(key, Mutex)

    def holdout(self, key: str) -> Holdout:
        return self._definition(key, Holdout)

    def cohort(self, key: str) -> Cohort:
        return self._definition(key, Cohort)

    def experiments(self) -> list[str]:
        return [k for k, o in self.objects.items() if isinstance(o.definition, Experiment)]

    @functools.cached_property
    def graph(self) -> Any:
        """The networkx DiGraph of the release, built on first use (see above)."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from((key, {"kind": kind}) for key, kind in self.nodes.items())
        for (a, b), references in self.edges.items():
            graph.add_edge(a, b, reference=references[0], references=references)
        return graph

    def references(self, source: str, target: str) -> list[Reference]:
        """What makes the edge `source -> target`, or nothing when there is none."""
        return self.edges.get((source, target), [])

    def view(self) -> GraphView:
        nodes = tuple((key, self.nodes[key]) for key in sorted(self.nodes))
        edges = sorted((a, b, _relation(refs)) for (a, b), refs in self.edges.items())
        return GraphView(nodes, tuple(edges))

    def topological_order(self) -> list[str]:
        import networkx as nx

        return list(nx.lexicographical_topological_sort(self.graph))


def _condition_references(
    owner: Loaded, node: AllOf | AnyOf | Condition, path: Path
) -> Iterator[Reference]:
    if isinstance(node, AllOf | AnyOf):
        word = "all" if isinstance(node, AllOf) else "any"
        for index, child in enumerate(node.all if isinstance(node, AllOf) else node.any):
            yield from _condition_references(owner, child, (*path, word, index))
    elif node.op in ("in_cohort", "not_in_cohort"):
        for index, value in enumerate(node.values):
            path_ = (*path, "values", index)
            yield Reference(owner, str(value), ("cohort",), path_, Relation.TARGETING)


def _audience_references(owner: Loaded, audience: Audience, path: Path) -> Iterator[Reference]:
    for index, cohort in enumerate(audience.cohorts):
        yield Reference(owner, cohort, ("cohort",), (*path, "cohorts", index), Relation.AUDIENCE)


def references(owner: Loaded) -> Iterator[Reference]:
    definition = owner.definition
    if isinstance(definition, Experiment):
        path: Path
        for index, prerequisite in enumerate(definition.prerequisites):
            path = ("prerequisites", index, "experiment")
            yield Reference(
                owner, prerequisite.experiment, ("experiment",), path, Relation.PREREQUISITE
            )
        if definition.targeting is not None:
            yield from _condition_references(owner, definition.targeting, ("targeting",))
        for variant, audience in definition.overrides.items():
            yield from _audience_references(owner, audience, ("overrides", variant))
    elif isinstance(definition, Mutex):
        for index, slot in enumerate(definition.slots):
            if slot.experiment is not None:
                path = ("slots", index, "experiment")
                yield Reference(owner, slot.experiment, ("experiment",), path, Relation.SLOT, index)
            if slot.group is not None:
                path = ("slots", index, "group")
                yield Reference(owner, slot.group, ("mutex",), path, Relation.SLOT, index)
        for number, audience in definition.pinned.items():
            yield from _audience_references(owner, audience, ("pinned", str(number)))
    elif isinstance(definition, Holdout):
        for index, key in enumerate(definition.members.experiments):
            path = ("members", "experiments", index)
            yield Reference(owner, key, ("experiment",), path, Relation.HOLDOUT_MEMBER)
        for index, key in enumerate(definition.members.groups):
            path = ("members", "groups", index)
            yield Reference(owner, key, ("mutex",), path, Relation.HOLDOUT_MEMBER)
        yield from _audience_references(owner, definition.include, ("include",))
        yield from _audience_references(owner, definition.exclude, ("exclude",))
    elif isinstance(definition, Cohort) and definition.match is not None:
        yield from _condition_references(owner, definition.match, ("match",))


def build(
    objects: dict[str, Loaded], invalid: set[str] | frozenset[str] = frozenset()
) -> tuple[Catalog, list[Diagnostic]]:
    """Link references, record the group structure and report what cannot be linked.

    References to `invalid` keys (files that failed to load, with errors of their own)
    are skipped rather than reported as unknown."""
    catalog = Catalog(objects)
    diagnostics: list[Diagnostic] = []
    for key in sorted(objects):
        if objects[key].definition.kind != "project":
            catalog.nodes[key] = objects[key].definition.kind
    keys_by_kind: dict[str, list[str]] = {}
    for key, loaded in objects.items():
        keys_by_kind.setdefault(loaded.definition.kind, []).append(key)
    group_references: dict[str, list[Reference]] = {}
    for key in sorted(objects):
        for reference in references(objects[key]):
            target = objects.get(reference.target)
            if target is None and reference.target in invalid:
                continue
            if target is None:
                candidates = [k for kind in reference.kinds for k in keys_by_kind.get(kind, [])]
                diagnostics.append(
                    make(
                        codes.UNKNOWN_REFERENCE,
                        f"unknown {' or '.join(reference.kinds)} '{reference.target}'"
                        f"{did_you_mean(reference.target, candidates)}",
                        reference.span,
                    )
                )
                continue
            if target.definition.kind not in reference.kinds:
                diagnostics.append(
                    make(
                        codes.WRONG_KIND_REFERENCE,
                        f"'{reference.target}' is {a_or_an(target.definition.kind)}, but "
                        f"{a_or_an(' or '.join(reference.kinds))} is expected here",
                        reference.span,
                    )
                )
                continue
            # One experiment in two slots of a group: one edge, every reference kept.
            catalog.edges.setdefault(reference.edge, []).append(reference)
            _record_structure(catalog, reference, group_references)
    diagnostics.extend(_prerequisite_variants(objects))
    diagnostics.extend(_placed_twice_through_cohorts(objects))
    diagnostics.extend(_two_parents(group_references))
    diagnostics.extend(_cycles(catalog))
    return catalog, diagnostics


def _record_structure(
    catalog: Catalog, reference: Reference, groups: dict[str, list[Reference]]
) -> None:
    owner = reference.owner.definition.key
    if reference.slot is not None:
        if reference.kinds == ("mutex",):
            groups.setdefault(reference.target, []).append(reference)
            catalog.parent.setdefault(reference.target, (owner, reference.slot))
        else:
            catalog.slots_of.setdefault(reference.target, []).append((owner, reference.slot))
    elif reference.relation is Relation.HOLDOUT_MEMBER:
        catalog.holdouts_of.setdefault(reference.target, []).append(owner)


def _prerequisite_variants(objects: dict[str, Loaded]) -> Iterator[Diagnostic]:
    for key in sorted(objects):
        owner = objects[key]
        if not isinstance(owner.definition, Experiment):
            continue
        for index, prerequisite in enumerate(owner.definition.prerequisites):
            target = objects.get(prerequisite.experiment)
            if target is None or not isinstance(target.definition, Experiment):
                continue  # reported as an unknown reference
            names = [v.key for v in target.definition.variants]
            for position, variant in enumerate(prerequisite.variants):
                if variant not in names:
                    yield make(
                        codes.UNKNOWN_VARIANT,
                        f"experiment '{prerequisite.experiment}' has no variant '{variant}'"
                        f"{did_you_mean(variant, names)}",
                        owner.span("prerequisites", index, "variants", position),
                    )


def _placed_twice_through_cohorts(objects: dict[str, Loaded]) -> Iterator[Diagnostic]:
    """A user sent to two slots (or variants) where one of the two places names them
    through a cohort's explicit `users`: knowable before any user arrives, so an error
    (places named directly twice are reported by `validate`)."""
    for key in sorted(objects):
        owner = objects[key]
        definition = owner.definition
        if isinstance(definition, Mutex):
            field, word, verb = "pinned", "slot", "pinned to"
            audiences = {str(number): a for number, a in sorted(definition.pinned.items())}
        elif isinstance(definition, Experiment):
            field, word, verb = "overrides", "variant", "overridden to"
            audiences = dict(definition.overrides)
        else:
            continue
        first: dict[str, tuple[str, str | None]] = {}  # user -> (place, cohort or None)
        for place, audience in audiences.items():
            sources: list[tuple[str, str | None, Path]] = [
                (user, None, (field, place, "users", index))
                for index, user in enumerate(audience.users)
            ]
            for index, named in enumerate(audience.cohorts):
                cohort = objects.get(named)
                if cohort is not None and isinstance(cohort.definition, Cohort):
                    path: Path = (field, place, "cohorts", index)
                    sources += [(user, named, path) for user in cohort.definition.users]
            for user, via, path in sources:
                earlier = first.setdefault(user, (place, via))
                if earlier[0] == place or earlier[1] == via:
                    continue  # one place, or a repeat `validate` reports (E205 too)
                yield make(
                    codes.PINNED_TWICE,
                    f"user '{user}' is {verb} {word} {earlier[0]} {_through(earlier[1])} and "
                    f"{word} {place} {_through(via)}; a user goes to one {word}: "
                    "remove one of the two",
                    owner.span(*path),
                )


def _through(cohort: str | None) -> str:
    return "directly" if cohort is None else f"through cohort '{cohort}'"


def _two_parents(group_references: dict[str, list[Reference]]) -> Iterator[Diagnostic]:
    for group, places in sorted(group_references.items()):
        for extra in places[1:]:
            first = places[0]
            yield make(
                codes.GROUP_TWO_PARENTS,
                f"group '{group}' is already nested in {first.label} of "
                f"'{first.owner.definition.key}' ({first.span}); a group has one parent",
                extra.span,
            )


def _cycles(catalog: Catalog) -> Iterator[Diagnostic]:
    successors: dict[str, list[str]] = {}
    for a, b in catalog.edges:
        successors.setdefault(a, []).append(b)
    try:
        graphlib.TopologicalSorter(successors).prepare()
    except graphlib.CycleError:
        pass  # there is one: networkx names every cycle, hop by hop
    else:
        return
    import networkx as nx

    graph = catalog.graph
    for component in sorted(nx.strongly_connected_components(graph), key=min):
        if len(component) == 1:
            (only,) = component
            if not graph.has_edge(only, only):
                continue
        edges = nx.find_cycle(graph.subgraph(component), source=min(component))
        hops = [graph.edges[a, b]["reference"] for a, b in edges]
        path = " -> ".join([edges[0][0], *(b for _a, b in edges)])
        yield make(
            codes.CYCLE,
            f"dependency cycle: {path}; break one of these references",
            hops[0].span,
            [
                f"{hop.span}: {a} -> {b} ({hop.label})"
                for hop, (a, b) in zip(hops, edges, strict=True)
            ],
        )
