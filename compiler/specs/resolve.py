"""The names a spec uses, checked against what the definitions declare: its
environments (DESIGN §10), and in each one's bundle the flags, variants and reasons it
names. Every unknown name is a located error with the nearest known one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from expc.diagnostics import Diagnostic, Span, make
from expc.outputs.bundle_types import Bundle, Flag
from expc.reading.load import a_or_an, did_you_mean
from expc.specs import codes
from expc.specs.expand import Concrete
from expc.specs.load import SpecFile

# The reasons any flag can give (DESIGN §4, and `unallocated` for a group's free
# share); the others name what the flag requires (`holdout:<key>`, `mutex:<key>`,
# `prerequisite:<key>`), listed in each flag of the bundle.
PLAIN_REASONS = (
    "override",
    "not-running",
    "no-bucketing-value",
    "targeting",
    "rollout",
    "traffic",
    "bucketed",
    "unallocated",
)


def environments(
    spec: SpecFile, declared: Sequence[str]
) -> tuple[list[str | None], list[Diagnostic]]:
    """The environments a spec runs in: those it names (all declared), or the one
    unnamed environment of definitions that declare none."""
    named = spec.spec.environment
    if not declared:
        if named is None:
            return [None], []
        message = (
            f"this spec names the environment '{named[0]}', but project.yaml declares no "
            "environments; remove 'environment'"
        )
        return [], [make(codes.ENVIRONMENT, message, spec.span("environment"))]
    listed = ", ".join(declared)
    if named is None:
        message = (
            f"this spec names no environment; the definitions declare {listed}: add "
            f"'environment: {declared[-1]}' (or a list of them)"
        )
        return [], [make(codes.ENVIRONMENT, message, Span(spec.path))]
    problems = []
    for index, name in enumerate(named):
        if name not in declared:
            where = ("environment", index) if len(named) > 1 else ("environment",)
            problems.append(
                make(
                    codes.ENVIRONMENT,
                    f"no environment '{name}'; project.yaml declares {listed}"
                    + did_you_mean(name, list(declared)),
                    spec.span(*where),
                )
            )
    if problems:
        return [], problems
    return list(dict.fromkeys(named)), []


class Names:
    """The flags of one environment's bundle, and the kinds of every other object."""

    def __init__(self, bundle: Bundle, kinds: Mapping[str, str]) -> None:
        self.flags: dict[str, Flag] = {flag["key"]: flag for flag in bundle["flags"]}
        self.kinds = kinds

    def unknown_flag(self, name: str, span: Span) -> Diagnostic | None:
        if name in self.flags:
            return None
        kind = self.kinds.get(name)
        if kind is not None:
            message = (
                f"'{name}' is {a_or_an(kind)}, not a flag; a spec names experiments, "
                "groups and holdouts"
            )
        else:
            message = f"no flag '{name}' in the definitions" + did_you_mean(name, list(self.flags))
        return make(codes.UNKNOWN_FLAG, message, span)

    def variants(self, name: str) -> list[str]:
        return [variant["key"] for variant in self.flags[name]["variants"]]

    def unknown_variant(self, flag: str, variant: str, span: Span) -> Diagnostic | None:
        known = self.variants(flag)
        if variant in known:
            return None
        return make(
            codes.UNKNOWN_VARIANT,
            f"{flag} has no variant '{variant}' (it has {', '.join(known)})"
            + did_you_mean(variant, known),
            span,
        )

    def reasons(self, name: str) -> list[str]:
        required = [r["reason"] for r in self.flags[name]["requires"]]
        return [*PLAIN_REASONS, *dict.fromkeys(required)]

    def unknown_reason(self, flag: str, reason: str, span: Span) -> Diagnostic | None:
        known = self.reasons(flag)
        if reason in known:
            return None
        return make(
            codes.UNKNOWN_REASON,
            f"{flag} never gives the reason '{reason}'; it gives {', '.join(known)}"
            + did_you_mean(reason, known),
            span,
        )


def case_problems(names: Names, case: Concrete) -> list[Diagnostic]:
    spec = case.spec
    problems: list[Diagnostic | None] = []
    for expected in case.expected:
        flag = expected.flag
        unknown = names.unknown_flag(flag, spec.span(*expected.place, key=True))
        if unknown is not None:
            problems.append(unknown)
            continue
        if "variant" in expected.given and expected.variant is not None:
            span = spec.span(*expected.place, "variant")
            problems.append(names.unknown_variant(flag, expected.variant, span))
        if "reason" in expected.given and expected.reason is not None:
            span = spec.span(*expected.place, "reason")
            problems.append(names.unknown_reason(flag, expected.reason, span))
    chosen: set[str] = set()
    for flag in case.at:
        span = spec.span(*case.place, "at", flag, key=True)
        unknown = names.unknown_flag(flag, span)
        problems.append(unknown)
        if unknown is None:
            chosen.add(names.flags[flag]["bucketing"]["by"])
    for attribute in sorted(chosen & set(case.user)):
        problems.append(
            make(
                codes.AT_CONFLICT,
                f"'user' sets '{attribute}', the bucketing attribute whose value 'at' "
                f"chooses; remove '{attribute}' from 'user', or 'at' from the case",
                spec.span(*case.place, "user", attribute, key=True),
            )
        )
    return [problem for problem in problems if problem is not None]


def check_problems(names: Names, spec: SpecFile) -> list[Diagnostic]:
    """The names of a spec's `shares` and `exclusive` lists."""
    problems: list[Diagnostic | None] = []
    for index, share in enumerate(spec.spec.shares):
        place = ("shares", index)
        unknown = names.unknown_flag(share.flag, spec.span(*place, "flag"))
        if unknown is not None:
            problems.append(unknown)
            continue
        kind = names.flags[share.flag]["kind"]
        if share.variant is not None:
            span = spec.span(*place, "variant")
            problems.append(names.unknown_variant(share.flag, share.variant, span))
        elif kind == "holdout":
            problems.append(
                make(
                    codes.WRONG_KIND,
                    f"{share.flag} is a holdout: everyone with an id has one of its variants; "
                    "write 'variant: holdout' with 'share: P%' for the share it holds out",
                    spec.span(*place, "enrolled"),
                )
            )
    for index, group in enumerate(spec.spec.exclusive):
        for position, name in enumerate(group):
            span = spec.span("exclusive", index, position)
            unknown = names.unknown_flag(name, span)
            problems.append(unknown)
            kind = names.flags[name]["kind"] if unknown is None else "experiment"
            if kind != "experiment":
                problems.append(
                    make(
                        codes.WRONG_KIND,
                        f"'{name}' is a {'group' if kind == 'mutex' else kind}; 'exclusive' "
                        "lists experiments (a group's slots are exclusive by construction)",
                        span,
                    )
                )
    return [problem for problem in problems if problem is not None]
