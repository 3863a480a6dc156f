"""The codes of `expc test`: T0xx a spec that cannot run (exit 2), T1xx a spec that
ran and failed (exit 1). Each is documented in docs/diagnostics.md and has a case
under tests/cases/specs/ (a test keeps it so). Codes are never reused.

Reading a spec file reuses the reading codes of definitions (E001-E011: YAML syntax,
duplicate keys, tags, nesting, characters, size), with the limits of definitions.
"""

from __future__ import annotations

from expc.diagnostics import Severity, define

_E = Severity.ERROR

# A spec that cannot run
UNKNOWN_FIELD = define("T001", "spec-unknown-field", _E, "a field a spec does not have")
MISSING_FIELD = define("T002", "spec-missing-field", _E, "a required field of a spec is absent")
INVALID_VALUE = define("T003", "spec-invalid-value", _E, "a value of the wrong type or range")
NOT_A_PERCENT = define("T004", "spec-not-a-percent", _E, "a share or draw not written as a percent")
MALFORMED_MATRIX = define(
    "T005", "spec-malformed-matrix", _E, "a matrix or a ${name} that cannot be expanded"
)
ENVIRONMENT = define(
    "T006", "spec-environment", _E, "a spec's environment is missing, unknown or not declared"
)
UNKNOWN_FLAG = define("T007", "spec-unknown-flag", _E, "a spec names no flag of the bundle")
UNKNOWN_VARIANT = define("T008", "spec-unknown-variant", _E, "a variant the flag does not have")
UNKNOWN_REASON = define("T009", "spec-unknown-reason", _E, "a reason the flag cannot give")
NO_USER_FOUND = define("T010", "spec-no-user-found", _E, "no user id lands in the `at` ranges")
AT_CONFLICT = define(
    "T011", "spec-at-conflict", _E, "`user` sets the bucketing attribute `at` chooses"
)
EMPTY_SPEC = define("T012", "spec-empty", _E, "a spec with nothing to check")
WRONG_KIND = define("T013", "spec-wrong-kind", _E, "a flag of the wrong kind for the check")
OUTSIDE_SPECS = define(
    "T014", "spec-outside-folder", _E, "a link below the specs folder that leads outside it"
)
NOT_YAML_EXTENSION = define("T015", "spec-not-yaml-extension", _E, "a spec file not named *.yaml")

# A spec that ran and failed
CASE_FAILED = define("T101", "case-failed", _E, "a user did not get what the case expects")
SHARE_OUTSIDE = define(
    "T102", "share-outside-interval", _E, "a simulated share does not fit the expected one"
)
NOT_EXCLUSIVE = define(
    "T103", "not-exclusive", _E, "a simulated user is in two experiments said to be exclusive"
)
