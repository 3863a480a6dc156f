"""Typed definitions: exactly the fields of DESIGN §2, frozen, unknown fields rejected.

Only the shape of one object is checked here; sums, references and anything that
needs a diagnostic of its own live in `validate` and `link`. An object's
`environments:` block (DESIGN §10) may set only the runtime fields of its kind: each
kind has a model of those (`ExperimentEnvironment`, ...), and `at(environment)` gives
the object with that environment's values.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
ENVIRONMENT_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
VARIANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _int_to_decimal(value: Any) -> Any:
    # YAML `50` is an int, `50.5` a Decimal; both are percents. Anything else would get
    # pydantic's "an instance of Decimal", which says nothing to someone writing YAML.
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if not isinstance(value, Decimal):
        raise PydanticCustomError(
            "percent_type", "must be a number from 0 to 100 (a percent, without '%'), e.g. 20"
        )
    return value


def _user_id(value: Any) -> Any:
    # Numeric ids are common (`- 12345`); they are hashed as their text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _slot_number(value: Any) -> Any:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


Key = Annotated[str, Field(pattern=KEY_PATTERN)]
EnvironmentName = Annotated[str, Field(pattern=ENVIRONMENT_PATTERN)]
VariantKey = Annotated[str, Field(pattern=VARIANT_PATTERN)]
Percent = Annotated[
    Decimal, BeforeValidator(_int_to_decimal), Field(ge=0, le=100, decimal_places=2)
]
UserId = Annotated[str, BeforeValidator(_user_id), Field(min_length=1, max_length=1024)]
SlotNumber = Annotated[int, BeforeValidator(_slot_number), Field(ge=1, le=20)]
# A private attribute's digests are compared under `<name>#sha256` (docs/bundle.md), so
# its name holds no `#`; letters, digits and `_ . : -`, like the attributes apps send.
PRIVATE_ATTRIBUTE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"
PrivateAttributeName = Annotated[str, Field(pattern=PRIVATE_ATTRIBUTE_PATTERN)]


def _none_listed() -> Any:
    """An empty list by default. A factory, not `= []`: pydantic deep-copies a literal
    default into every object, which was a tenth of reading a file; the schema still
    shows the default."""
    return Field(default_factory=list, json_schema_extra={"default": []})


def _none_mapped() -> Any:
    """An empty mapping by default (see `_none_listed`)."""
    return Field(default_factory=dict, json_schema_extra={"default": {}})


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Strict:
        # Definitions are never changed once read, so a default such as `Bucketing()`
        # can be shared: pydantic deep-copies model defaults into every object, which
        # was a tenth of reading a file.
        return self


class Bucketing(Strict):
    by: Annotated[str, Field(min_length=1)] | None = None
    salt: Annotated[str, Field(min_length=1)] | None = None


class Audience(Strict):
    """Users by id and/or cohorts by key; written as a list of ids or as this mapping."""

    users: list[UserId] = _none_listed()
    cohorts: list[Key] = _none_listed()


def _audience(value: Any) -> Any:
    if isinstance(value, list):
        return {"users": value}
    return value


AudienceField = Annotated[Audience, BeforeValidator(_audience)]

# --- conditions -------------------------------------------------------------------

Operator = Literal[
    "is",
    "is_not",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "lt",
    "lte",
    "gt",
    "gte",
    "version_lt",
    "version_lte",
    "version_gt",
    "version_gte",
    "exists",
    "not_exists",
    "in_cohort",
    "not_in_cohort",
]
ConditionValue = str | int | Decimal | bool


def _as_list(value: Any) -> Any:
    # `values: NO` is as natural as `values: [NO]`.
    return value if isinstance(value, list) or value is None else [value]


class Condition(Strict):
    attribute: Annotated[str, Field(min_length=1)] | None = None
    op: Operator
    values: Annotated[list[ConditionValue], BeforeValidator(_as_list)] = _none_listed()


class AllOf(Strict):
    all: list[ConditionNode] = Field(min_length=1)


class AnyOf(Strict):
    any: list[ConditionNode] = Field(min_length=1)


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "all" in value:
            return "all"
        if "any" in value:
            return "any"
    return "condition"


ConditionNode = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Condition, Tag("condition")],
    Discriminator(_condition_kind),
]
Targeting = Annotated[AllOf, Tag("all")] | Annotated[AnyOf, Tag("any")]
TargetingField = Annotated[Targeting, Discriminator(_condition_kind)]

# --- objects ---------------------------------------------------------------------


class Acknowledgement(Strict):
    """A blocked change accepted knowingly (DESIGN §6); `expc check` prints it."""

    rule: Annotated[str, Field(min_length=1)]
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    reason: Annotated[str, Field(min_length=1)]


class EnvironmentValues(Strict):
    """The runtime fields one environment sets; a field it does not name keeps the
    object's own value (a value replaces it whole: no deep merge)."""

    # Fields whose value cannot be null (null is a value only where the base allows it).
    NOT_NULL: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _values_are_given(self) -> Self:
        for name in sorted(self.model_fields_set & self.NOT_NULL):
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null in an environment; give a value")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class Definition(Strict):
    key: Key
    name: str | None = None
    description: str | None = None
    owners: list[Annotated[str, Field(min_length=1)]] = _none_listed()
    tags: list[Annotated[str, Field(min_length=1)]] = _none_listed()
    acknowledge: list[Acknowledgement] = _none_listed()


class Variant(Strict):
    key: VariantKey
    weight: Percent | None = None
    payload: Any = None

    @field_validator("payload")
    @classmethod
    def _payload_has_no_fractions(cls, payload: Any) -> Any:
        _reject_fractions(payload)
        return payload


def _reject_fractions(value: Any) -> None:
    # Bundles are canonical JSON without floats, so SDKs agree on every byte.
    if isinstance(value, Decimal):
        raise ValueError(
            f"payload number {value} is not a whole number; bundles hold no floats, "
            "so write it as a string or in smaller whole units"
        )
    if isinstance(value, dict):
        for item in value.values():
            _reject_fractions(item)
    if isinstance(value, list):
        for item in value:
            _reject_fractions(item)


class Prerequisite(Strict):
    experiment: Key
    variants: list[VariantKey] = Field(min_length=1)


State = Literal["draft", "running", "stopped", "concluded"]
# The states of an experiment that has enrolled users at some point (DESIGN §6).
RAN = frozenset({"running", "stopped", "concluded"})


class ExperimentEnvironment(EnvironmentValues):
    NOT_NULL = frozenset({"state", "traffic", "prerequisites", "overrides"})

    state: State | None = None
    traffic: Annotated[int, Field(ge=0, le=100)] | None = None
    targeting: TargetingField | None = None
    prerequisites: list[Prerequisite] | None = None
    overrides: dict[VariantKey, AudienceField] | None = None
    rollout: VariantKey | None = None


class Experiment(Definition):
    kind: Literal["experiment"]
    state: State = "draft"
    bucketing: Bucketing = Bucketing()
    traffic: Annotated[int, Field(ge=0, le=100)] = 100
    variants: list[Variant] = Field(min_length=2)
    targeting: TargetingField | None = None
    prerequisites: list[Prerequisite] = _none_listed()
    overrides: dict[VariantKey, AudienceField] = _none_mapped()
    rollout: VariantKey | None = None
    environments: dict[EnvironmentName, ExperimentEnvironment] = _none_mapped()

    @property
    def serves(self) -> bool:
        return self.state == "running" or (self.state == "concluded" and self.rollout is not None)


class Slot(Strict):
    percent: Percent | None = None
    experiment: Key | None = None
    group: Key | None = None


class MutexEnvironment(EnvironmentValues):
    NOT_NULL = frozenset({"pinned"})

    pinned: dict[SlotNumber, AudienceField] | None = None


class Mutex(Definition):
    kind: Literal["mutex"]
    bucketing: Bucketing = Bucketing()
    # The 20-slot limit has a diagnostic of its own (validate), so no max here.
    slots: list[Slot] = Field(min_length=1)
    pinned: dict[SlotNumber, AudienceField] = _none_mapped()
    environments: dict[EnvironmentName, MutexEnvironment] = _none_mapped()


class HoldoutMembers(Strict):
    experiments: list[Key] = _none_listed()
    groups: list[Key] = _none_listed()


class HoldoutEnvironment(EnvironmentValues):
    NOT_NULL = frozenset({"include", "exclude"})

    include: AudienceField | None = None
    exclude: AudienceField | None = None


class Holdout(Definition):
    kind: Literal["holdout"]
    percent: Annotated[Percent, Field(gt=0, lt=100)]
    bucketing: Bucketing = Bucketing()
    members: HoldoutMembers = HoldoutMembers()
    include: AudienceField = Audience()
    exclude: AudienceField = Audience()
    environments: dict[EnvironmentName, HoldoutEnvironment] = _none_mapped()


def salt_of(definition: Experiment | Mutex | Holdout) -> str:
    """The salt an object hashes with: its own, or its key (DESIGN §2)."""
    return definition.bucketing.salt or definition.key


class CohortEnvironment(EnvironmentValues):
    NOT_NULL = frozenset({"users"})

    users: list[UserId] | None = None
    match: TargetingField | None = None


class Cohort(Definition):
    kind: Literal["cohort"]
    users: list[UserId] = _none_listed()
    match: TargetingField | None = None
    environments: dict[EnvironmentName, CohortEnvironment] = _none_mapped()


class ProjectBucketing(Strict):
    by: Annotated[str, Field(min_length=1)] = "user_id"


class EnvironmentCheck(Strict):
    """How the safety check treats one environment's findings."""

    blocking: bool = True  # false: its findings are warnings (a staging environment)


class CheckSettings(Strict):
    disable: list[str] = _none_listed()
    severity: dict[str, Literal["error", "warning", "notice"]] = _none_mapped()
    environments: dict[EnvironmentName, EnvironmentCheck] = _none_mapped()


class Project(Definition):
    kind: Literal["project"]
    bucketing: ProjectBucketing = ProjectBucketing()
    check: CheckSettings = CheckSettings()
    warn_below_traffic: Percent | None = None
    # Names of extra outputs; `validate` checks them against the registered targets.
    targets: list[Annotated[str, Field(min_length=1)]] = _none_listed()
    # The environments, in promotion order (DESIGN §10); none: one unnamed environment.
    environments: list[EnvironmentName] = _none_listed()
    # The folder of the specs `expc test` runs (DESIGN §11), relative to the folder that
    # holds the definitions folder; none: `specs` there.
    specs: Annotated[str, Field(min_length=1)] | None = None
    # Attributes whose values are never written to a bundle or target (DESIGN §12): the
    # compiler writes salted SHA-256 digests of them instead (docs/bundle.md).
    private_attributes: list[PrivateAttributeName] = _none_listed()
    # The salt of those digests; none: the project's name, else its key.
    private_salt: Annotated[str, Field(min_length=1, max_length=256)] | None = None


AnyDefinition = Experiment | Mutex | Holdout | Cohort | Project
DefinitionField = Annotated[AnyDefinition, Field(discriminator="kind")]
KINDS: dict[str, type[Definition]] = {
    "experiment": Experiment,
    "mutex": Mutex,
    "holdout": Holdout,
    "cohort": Cohort,
    "project": Project,
}

AllOf.model_rebuild()
AnyOf.model_rebuild()


VariesByEnvironment = Experiment | Mutex | Holdout | Cohort
# kind -> the fields an environment may set
RUNTIME_FIELDS: dict[str, tuple[str, ...]] = {
    "experiment": tuple(ExperimentEnvironment.model_fields),
    "mutex": tuple(MutexEnvironment.model_fields),
    "holdout": tuple(HoldoutEnvironment.model_fields),
    "cohort": tuple(CohortEnvironment.model_fields),
}


def at_environment(definition: AnyDefinition, environment: str) -> AnyDefinition:
    """The definition as it is in `environment`: its own values, replaced by the ones
    its `environments:` block sets there."""
    if isinstance(definition, Project):
        return definition
    values = definition.environments.get(environment)
    if values is None:
        return definition
    return definition.model_copy(update=values.changes())
