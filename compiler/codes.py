"""The codes of reading, validating, linking and linting one release; the safety
check's rules (C1xx) register in the same registry from `check.rules`. Codes are never
reused.

E0xx: reading files; E1xx: the shape of one object; E2xx: objects together;
W3xx: warnings. Each is documented in docs/diagnostics.md (a test keeps it so).
"""

from __future__ import annotations

from expc.diagnostics import Severity, define

_E = Severity.ERROR
_W = Severity.WARNING
_code = define


# Reading files
YAML_SYNTAX = _code("E001", "yaml-syntax", _E, "the file is not valid YAML")
DUPLICATE_KEY = _code("E002", "duplicate-key", _E, "a mapping repeats a key")
NOT_A_MAPPING = _code("E003", "not-a-mapping", _E, "the document is not one mapping")
NOT_UTF8 = _code("E004", "not-utf8", _E, "the file is not UTF-8 text")
ALIAS_EXPANSION = _code("E005", "alias-expansion", _E, "aliases expand to too many nodes")
EMPTY_FILE = _code("E006", "empty-file", _E, "the file holds no document")
MULTIPLE_DOCUMENTS = _code("E007", "multiple-documents", _E, "more than one document")
UNSUPPORTED_TAG = _code("E008", "unsupported-tag", _E, "a YAML tag expc does not read")
UNREADABLE = _code("E009", "unreadable-file", _E, "the file cannot be read")
TOO_DEEP = _code("E010", "too-deep", _E, "mappings and lists nest past the limit")
CONTROL_CHARACTER = _code("E011", "control-character", _E, "a character YAML does not allow")
OUTSIDE_DEFINITIONS = _code(
    "E012", "outside-definitions", _E, "a link that leads outside the definitions directory"
)
NOT_YAML_EXTENSION = _code("E013", "not-yaml-extension", _E, "a definitions file not named *.yaml")

# One object
UNKNOWN_FIELD = _code("E101", "unknown-field", _E, "a field the kind does not have")
MISSING_FIELD = _code("E102", "missing-field", _E, "a required field is absent")
INVALID_VALUE = _code("E103", "invalid-value", _E, "a value of the wrong type or range")
UNKNOWN_KIND = _code("E104", "unknown-kind", _E, "kind is not one expc knows")
KEY_MISMATCH = _code("E105", "key-mismatch", _E, "key differs from the file name")
WEIGHTS_NOT_100 = _code("E106", "weights-not-100", _E, "variant weights do not sum to 100")
TOO_MANY_SLOTS = _code("E107", "too-many-slots", _E, "a mutex group has more than 20 slots")
SLOTS_OVER_100 = _code("E108", "slots-over-100", _E, "slot percents sum to more than 100")
ROLLOUT_MISUSE = _code("E109", "rollout-misuse", _E, "rollout outside concluded or unknown")
DUPLICATE_VARIANT = _code("E110", "duplicate-variant", _E, "two variants share a key")
INVALID_CONDITION = _code("E111", "invalid-condition", _E, "a targeting condition is wrong")
PROJECT_MISPLACED = _code("E112", "project-misplaced", _E, "project.yaml is not at the root")
UNKNOWN_VARIANT = _code("E113", "unknown-variant", _E, "a variant name that does not exist")
EMPTY_SLOT_MEMBER = _code("E114", "slot-member", _E, "a slot names both a group and one experiment")
NOT_PER_ENVIRONMENT = _code(
    "E115", "not-per-environment", _E, "an environment sets a field that may not vary"
)

# Objects together
DUPLICATE_OBJECT = _code("E201", "duplicate-object", _E, "two objects share one key")
UNKNOWN_REFERENCE = _code("E202", "unknown-reference", _E, "a reference to no such object")
WRONG_KIND_REFERENCE = _code("E203", "wrong-kind", _E, "a reference to an object of another kind")
CYCLE = _code("E204", "cycle", _E, "objects depend on each other in a circle")
PINNED_TWICE = _code("E205", "pinned-twice", _E, "a user or cohort pinned to two slots")
GROUP_TWO_PARENTS = _code("E206", "group-two-parents", _E, "a group nested in two parents")
TWICE_IN_GROUP_TREE = _code(
    "E207", "twice-in-group-tree", _E, "one experiment in two groups of one tree"
)
UNKNOWN_ENVIRONMENT = _code(
    "E208", "unknown-environment", _E, "an environments block names no declared environment"
)
ENVIRONMENTS_UNDECLARED = _code(
    "E209", "environments-undeclared", _E, "an environments block where the project declares none"
)
PRIVATE_ATTRIBUTE_CONDITION = _code(
    "E210",
    "private-attribute-condition",
    _E,
    "a condition a private attribute's digests cannot answer",
)

# Warnings
MULTIPLE_GROUPS = _code(
    "W301", "multiple-mutex-groups", _W, "an experiment in two top-level groups"
)
HOLDOUT_TWICE = _code("W302", "holdout-covers-twice", _W, "a holdout covers an experiment twice")
LOW_TRAFFIC = _code("W303", "low-effective-traffic", _W, "effective traffic under the threshold")
SHARED_SALT = _code("W304", "shared-salt", _W, "two objects hash with one salt")
PREREQUISITE_NOT_SERVING = _code(
    "W305", "prerequisite-not-serving", _W, "an experiment serves but a prerequisite does not"
)

# Generated files expc reads back
INVALID_LEDGER = _code("E014", "invalid-ledger", _E, "generated/ledger.json is not a ledger")
