"""The shape of `bundle.json` (DESIGN §7), as typed dicts: the code that builds the
bundle is type-checked against them, and its JSON Schema is generated from them.

Every flag is self-contained; an SDK evaluates the flags in list order, one pass:

1. `serving` false -> none (`not-running`)
2. the user's bucketing value in `overrides.users`, else the first `overrides.cohorts`
   entry whose `when` holds -> that variant (`override`)
3. each `requires` entry in order: the earlier flag's variant must be one of
   `variants`, else none with that entry's `reason`
4. `targeting` fails -> none (`targeting`)
5. `rollout` set -> that variant (`rollout`)
6. hash `salt + "/" + value`; `alloc >= traffic` -> none (`traffic`)
7. the variant whose `range` holds `point` (`bucketed`), else none (`unallocated`)
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

SCHEMA_VERSION = "1.0"
# A bundle with `private` (docs/bundle.md): SDKs that cannot hash private attributes
# refuse it instead of reading its digests as missing attributes.
PRIVATE_SCHEMA_VERSION = "2.0"


class AttributeCondition(TypedDict):
    attribute: str
    op: str
    values: list[str]


class AllCondition(TypedDict):
    all: list[BundleCondition]


class AnyCondition(TypedDict):
    any: list[BundleCondition]


class NoneCondition(TypedDict):
    none: list[BundleCondition]


BundleCondition = AttributeCondition | AllCondition | AnyCondition | NoneCondition


class BundleBucketing(TypedDict):
    by: str
    salt: str


class CohortOverride(TypedDict):
    variant: str
    when: BundleCondition


class Overrides(TypedDict):
    users: dict[str, str]
    cohorts: list[CohortOverride]


class Requirement(TypedDict):
    flag: str
    variants: list[str]
    reason: str


class BundleVariant(TypedDict):
    key: str
    range: list[int]
    payload: NotRequired[Any]


class Flag(TypedDict):
    key: str
    kind: Literal["experiment", "mutex", "holdout"]
    # The experiment's lifecycle state; groups and holdouts are "active".
    state: Literal["draft", "running", "stopped", "concluded", "active"]
    serving: bool
    bucketing: BundleBucketing
    overrides: Overrides
    requires: list[Requirement]
    targeting: BundleCondition | None
    rollout: str | None
    traffic: int
    variants: list[BundleVariant]


class Release(TypedDict):
    content_id: str  # of the flags: two environments with the same flags share it
    compiler_version: str
    environment: NotRequired[str]  # with declared environments: the one this bundle is
    source_commit: NotRequired[str]


class Acknowledged(TypedDict):
    """An acknowledgement declared in the definitions (`expc check`, DESIGN §6)."""

    key: str
    rule: str
    fingerprint: str
    reason: str


class PrivateBlock(TypedDict):
    """Present only when the project declares private attributes (docs/bundle.md): the
    evaluator adds `<attribute>#sha256` to the user for each of `attributes`."""

    salt: str
    attributes: list[str]


class Bundle(TypedDict):
    schema_version: str
    release: Release
    flags: list[Flag]
    # The private attributes and their salt; in the content id when present.
    private: NotRequired[PrivateBlock]
    # Changes a person accepted knowingly; not part of the content id.
    audit: NotRequired[list[Acknowledged]]
