"""Build the native bundle from a linked catalog (DESIGN §7)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from expc import __version__
from expc.outputs.bundle_types import (
    PRIVATE_SCHEMA_VERSION,
    SCHEMA_VERSION,
    Acknowledged,
    Bundle,
    BundleCondition,
    BundleVariant,
    CohortOverride,
    Flag,
    Overrides,
    Release,
    Requirement,
)
from expc.outputs.private import Hiding, hide
from expc.pipeline.link import Catalog
from expc.reading.model import (
    AllOf,
    AnyOf,
    Audience,
    Cohort,
    Condition,
    ConditionValue,
    Experiment,
    Holdout,
    Mutex,
    salt_of,
)
from expc.sdk.bucketing import POINTS, basis_points, boundary, ranges
from expc.sdk.evaluate import compact_json, content_id
from expc.shares import slot_shares, variant_shares

HELD_OUT = "holdout"
NOT_HELD_OUT = "on"


def canonical_json(value: Any) -> str:
    """Sorted keys, UTF-8, two-space indent, final newline: readable in review diffs."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2) + "\n"


def bundle_json(bundle: Bundle, flag_texts: Sequence[str] | None = None) -> str:
    """The bundle file: canonical JSON laid out one flag per line.

    Sorted keys and no insignificant spaces inside a flag; a review diff shows exactly
    which flags changed, and the C JSON encoder writes 100,000 flags in a blink (the
    indenting encoder is pure Python and ten times slower).
    """
    if flag_texts is None:
        flag_texts = [compact_json(flag) for flag in bundle["flags"]]
    flags = ",\n".join("    " + text for text in flag_texts)
    audit = f'  "audit": {compact_json(bundle["audit"])},\n' if bundle.get("audit") else ""
    private = f'  "private": {compact_json(bundle["private"])},\n' if "private" in bundle else ""
    return (
        "{\n"
        + audit
        + '  "flags": ['
        + (f"\n{flags}\n  " if flags else "")
        + "],\n"
        + private
        + f'  "release": {compact_json(bundle["release"])},\n'
        + f'  "schema_version": {compact_json(bundle["schema_version"])}\n'
        + "}\n"
    )


def vectors_json(document: dict[str, Any]) -> str:
    """The vectors file: one vector per line, like the bundle.

    Surrogate code points (the ids that test the hash's text rule) have no UTF-8: each
    is written as its JSON escape `\\udXXX`, so the file stays valid UTF-8 and decodes
    back to the same text. Everything else is written as UTF-8, not escaped."""
    lines = ",\n".join("    " + compact_json(vector) for vector in document["vectors"])
    head = {k: v for k, v in document.items() if k != "vectors"}
    fields = "".join(f'  "{k}": {compact_json(v)},\n' for k, v in sorted(head.items()))
    text = "{\n" + fields + '  "vectors": [' + (f"\n{lines}\n  " if lines else "") + "]\n}\n"
    # Surrogates can only stand inside JSON strings, where `\udXXX` is their escape.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def slot_variant(index: int) -> str:
    return f"slot-{index + 1}"


class _Builder:
    def __init__(self, catalog: Catalog, default_by: str) -> None:
        self.catalog = catalog
        self.default_by = default_by

    def by(self, definition: Experiment | Mutex | Holdout) -> str:
        return definition.bucketing.by or self.default_by

    # --- conditions -------------------------------------------------------------

    def condition(self, node: AllOf | AnyOf | Condition, by: str) -> BundleCondition:
        if isinstance(node, AllOf):
            return {"all": [self.condition(child, by) for child in node.all]}
        if isinstance(node, AnyOf):
            return {"any": [self.condition(child, by) for child in node.any]}
        if node.op in ("in_cohort", "not_in_cohort"):
            members = [self.cohort(str(key), node.attribute or by) for key in node.values]
            if node.op == "in_cohort":
                return members[0] if len(members) == 1 else {"any": members}
            return {"none": members}
        attribute = node.attribute or by
        return {"attribute": attribute, "op": node.op, "values": [_text(v) for v in node.values]}

    def cohort(self, key: str, by: str) -> BundleCondition:
        cohort = self.catalog.objects[key].definition
        assert isinstance(cohort, Cohort)
        ways: list[BundleCondition] = []
        if cohort.users:
            ways.append({"attribute": by, "op": "in", "values": sorted(cohort.users)})
        if cohort.match is not None:
            ways.append(self.condition(cohort.match, by))
        return ways[0] if len(ways) == 1 else {"any": ways}

    def overrides(self, audiences: Sequence[tuple[str, Audience]], by: str) -> Overrides:
        """Forced placements, the first place that takes a user winning (DESIGN §2:
        "the first pinned slot that the user qualifies for wins", for direct and cohort
        pins alike). SDKs try `users` first, then `cohorts` in order; so listed users
        go into `users` only while no cohort comes before their place, and after one
        they become an ordered entry of their own."""
        users: dict[str, str] = {}
        cohorts: list[CohortOverride] = []
        for variant, audience in audiences:
            listed = sorted(set(audience.users) - set(users))
            if cohorts and listed:
                when: BundleCondition = {"attribute": by, "op": "in", "values": listed}
                cohorts.append({"variant": variant, "when": when})
            else:
                for user in audience.users:
                    users.setdefault(user, variant)
            for key in audience.cohorts:
                cohorts.append({"variant": variant, "when": self.cohort(key, by)})
        return {"users": users, "cohorts": cohorts}

    # --- requirements -------------------------------------------------------------

    def holdout_requirements(self, key: str) -> list[Requirement]:
        return [
            {"flag": holdout, "variants": [NOT_HELD_OUT], "reason": f"holdout:{holdout}"}
            for holdout in self.catalog.holdouts_covering(key)
        ]

    def group_requirements(self, key: str) -> list[Requirement]:
        """For each group tree above `key`, every group from the root down to it."""
        chains: list[list[Requirement]] = []
        direct: dict[str, list[int]] = {}
        for group, slot in self.catalog.slots_of.get(key, []):
            direct.setdefault(group, []).append(slot)
        for group, slots in sorted(direct.items()):
            chain: list[Requirement] = [
                {"flag": group, "variants": [slot_variant(s) for s in sorted(slots)], "reason": ""}
            ]
            while group in self.catalog.parent:
                group, slot = self.catalog.parent[group]
                chain.append({"flag": group, "variants": [slot_variant(slot)], "reason": ""})
            for requirement in chain:
                requirement["reason"] = f"mutex:{requirement['flag']}"
            chains.append(list(reversed(chain)))
        return [
            requirement
            for chain in sorted(chains, key=lambda c: c[0]["flag"])
            for requirement in chain
        ]

    # --- flags ----------------------------------------------------------------------

    def experiment(self, experiment: Experiment) -> Flag:
        by = self.by(experiment)
        rolled_out = experiment.state == "concluded" and experiment.rollout is not None
        requires = self.holdout_requirements(experiment.key)
        if not rolled_out:  # DESIGN §2: a rollout is outside mutual exclusion
            requires += self.group_requirements(experiment.key)
        requires += [
            {
                "flag": p.experiment,
                "variants": list(p.variants),
                "reason": f"prerequisite:{p.experiment}",
            }
            for p in experiment.prerequisites
        ]
        variants: list[BundleVariant] = []
        for variant, (start, end) in zip(
            experiment.variants, ranges(variant_shares(experiment)), strict=True
        ):
            entry: BundleVariant = {"key": variant.key, "range": [start, end]}
            if variant.payload is not None:
                entry["payload"] = variant.payload
            variants.append(entry)
        declared = [v.key for v in experiment.variants]
        audiences = sorted(experiment.overrides.items(), key=lambda item: declared.index(item[0]))
        return {
            "key": experiment.key,
            "kind": "experiment",
            "state": experiment.state,
            "serving": experiment.serves,
            "bucketing": {"by": by, "salt": salt_of(experiment)},
            "overrides": self.overrides(audiences, by),
            "requires": requires,
            "targeting": None
            if experiment.targeting is None
            else self.condition(experiment.targeting, by),
            "rollout": experiment.rollout if rolled_out else None,
            "traffic": experiment.traffic,
            "variants": variants,
        }

    def mutex(self, group: Mutex) -> Flag:
        by = self.by(group)
        requires: list[Requirement] = self.holdout_requirements(group.key)
        if group.key in self.catalog.parent:
            parent, slot = self.catalog.parent[group.key]
            requires.append(
                {"flag": parent, "variants": [slot_variant(slot)], "reason": f"mutex:{parent}"}
            )
        pins = [
            (slot_variant(number - 1), audience)
            for number, audience in sorted(group.pinned.items())
        ]
        slots: list[BundleVariant] = [
            {"key": slot_variant(index), "range": [start, end]}
            for index, (start, end) in enumerate(ranges(slot_shares(group)))
        ]
        return self._group_flag(group, by, requires, self.overrides(pins, by), slots)

    def holdout(self, holdout: Holdout) -> Flag:
        by = self.by(holdout)
        held = boundary(basis_points(holdout.percent))
        audiences = [(HELD_OUT, holdout.include), (NOT_HELD_OUT, holdout.exclude)]
        # An excluded user is never held out, so exclusion wins over inclusion.
        overrides = self.overrides(list(reversed(audiences)), by)
        variants: list[BundleVariant] = [
            {"key": HELD_OUT, "range": [0, held]},
            {"key": NOT_HELD_OUT, "range": [held, POINTS]},
        ]
        return self._group_flag(holdout, by, [], overrides, variants)

    def _group_flag(
        self,
        definition: Mutex | Holdout,
        by: str,
        requires: list[Requirement],
        overrides: Overrides,
        variants: list[BundleVariant],
    ) -> Flag:
        return {
            "key": definition.key,
            "kind": definition.kind,
            "state": "active",
            "serving": True,
            "bucketing": {"by": by, "salt": salt_of(definition)},
            "overrides": overrides,
            "requires": requires,
            "targeting": None,
            "rollout": None,
            "traffic": 100,
            "variants": variants,
        }


def _text(value: ConditionValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def acknowledged(catalog: Catalog) -> list[Acknowledged]:
    """Every acknowledgement the definitions declare, for the bundle's audit section."""
    return [
        {"key": key, "rule": a.rule, "fingerprint": a.fingerprint, "reason": a.reason}
        for key in sorted(catalog.objects)
        for a in catalog.objects[key].definition.acknowledge
    ]


@dataclass
class SharedFlags:
    """Flags that are the same in several environments, built and written once.

    A flag depends only on its object's values and on the cohorts it names (structure
    is the same everywhere), so a flag whose key is not in an environment's `varying`
    set is the same in every such environment; so is the evaluation order when the
    edges are."""

    flags: dict[str, tuple[Flag, str]] = field(default_factory=dict)
    orders: dict[frozenset[tuple[str, str]], list[str]] = field(default_factory=dict)

    def order(self, catalog: Catalog) -> list[str]:
        edges = frozenset(catalog.edges)
        if edges not in self.orders:
            self.orders[edges] = catalog.topological_order()
        return self.orders[edges]


def build_flags(
    catalog: Catalog,
    default_by: str,
    shared: SharedFlags | None = None,
    varying: frozenset[str] = frozenset(),
    hiding: Hiding | None = None,
) -> list[tuple[Flag, str]]:
    """Every flag in evaluation order, with its compact text. With `shared`, a flag
    not in `varying` is taken from (or left for) the other environments; with
    `hiding`, the values of private attributes are digests (`outputs.private`)."""
    builder = _Builder(catalog, default_by)
    order = shared.order(catalog) if shared is not None else catalog.topological_order()
    flags: list[tuple[Flag, str]] = []
    for key in order:
        if shared is not None and key in shared.flags and key not in varying:
            flags.append(shared.flags[key])
            continue
        definition = catalog.objects[key].definition
        if isinstance(definition, Experiment):
            flag = builder.experiment(definition)
        elif isinstance(definition, Mutex):
            flag = builder.mutex(definition)
        elif isinstance(definition, Holdout):
            flag = builder.holdout(definition)
        else:
            continue
        if hiding is not None:
            flag = hide(flag, hiding)
        built = (flag, compact_json(flag))
        if shared is not None and key not in varying:
            shared.flags[key] = built
        flags.append(built)
    return flags


def build_bundle(
    catalog: Catalog,
    default_by: str,
    source_commit: str | None = None,
    environment: str | None = None,
    shared: SharedFlags | None = None,
    varying: frozenset[str] = frozenset(),
    hiding: Hiding | None = None,
) -> tuple[Bundle, str]:
    """The bundle and the exact text of `bundle.json`; `environment` names the declared
    environment it is for (none without environments); `hiding` the private attributes
    (none: the bundle has no `private` and the schema version of 1.0)."""
    built = build_flags(catalog, default_by, shared, varying, hiding)
    flags = [flag for flag, _text in built]
    flag_texts = [text for _flag, text in built]
    private = hiding.block() if hiding is not None else None
    version = SCHEMA_VERSION if private is None else PRIVATE_SCHEMA_VERSION
    release: Release = {
        "content_id": content_id(version, flag_texts, private),
        "compiler_version": __version__,
    }
    if environment is not None:
        release["environment"] = environment
    if source_commit:
        release["source_commit"] = source_commit
    bundle: Bundle = {"schema_version": version, "release": release, "flags": flags}
    if private is not None:
        bundle["private"] = private
    audit = acknowledged(catalog)
    if audit:
        bundle["audit"] = audit
    return bundle, bundle_json(bundle, flag_texts)
