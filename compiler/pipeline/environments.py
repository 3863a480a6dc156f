"""Environments (DESIGN §10): one structure, runtime values per environment.

Without `environments:` in project.yaml there is one unnamed environment and nothing
changes. With them, validation, linking and lint run once per environment, on the
objects with that environment's values (`Loaded.at`). Structure is the same
everywhere, so only objects that set something per environment are checked again; a
diagnostic that holds in every environment is reported once as it is, one that holds
in some says which ("(in staging)"), once, not once per environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from expc import codes
from expc.diagnostics import Diagnostic, Severity, make, sorted_diagnostics
from expc.pipeline.link import Catalog, Relation, build
from expc.pipeline.lint import lint
from expc.pipeline.private_checks import private_problems
from expc.pipeline.validate import check_object
from expc.reading.load import Loaded, did_you_mean
from expc.reading.model import Project


@dataclass(frozen=True)
class Environment:
    """One environment of a release: every object with its values there, linked."""

    name: str | None  # None: the one environment of a repository that declares none
    objects: Mapping[str, Loaded]
    catalog: Catalog


def varying(environment: Environment, base: Mapping[str, Loaded]) -> frozenset[str]:
    """The objects whose flags may differ from the base definitions here: those that
    set values for this environment, and those naming (through any chain of cohorts)
    a cohort that does."""
    changed = {key for key, loaded in environment.objects.items() if loaded is not base[key]}
    cohorts = [key for key in changed if environment.catalog.nodes.get(key) == "cohort"]
    if not cohorts:
        return frozenset(changed)
    named_by: dict[str, list[str]] = {}
    for (source, target), references in environment.catalog.edges.items():
        if any(r.relation in (Relation.TARGETING, Relation.AUDIENCE) for r in references):
            named_by.setdefault(source, []).append(target)
    waiting = list(cohorts)
    while waiting:
        for owner in named_by.get(waiting.pop(), []):
            if owner not in changed:
                changed.add(owner)
                waiting.append(owner)
    return frozenset(changed)


def declared(project: Project | None) -> tuple[str, ...]:
    return tuple(project.environments) if project is not None else ()


def block_problems(objects: Mapping[str, Loaded], names: Sequence[str]) -> list[Diagnostic]:
    """An `environments:` block where none are declared, or naming one that is not."""
    problems = []
    for key in sorted(objects):
        loaded = objects[key]
        if isinstance(loaded.definition, Project):
            problems += _check_settings_problems(loaded, loaded.definition, names)
            continue
        blocks = loaded.definition.environments
        if not blocks:
            continue
        if not names:
            problems.append(
                make(
                    codes.ENVIRONMENTS_UNDECLARED,
                    "this object sets values per environment, but project.yaml declares no "
                    "environments; add `environments: [staging, production]` (in promotion "
                    "order) to project.yaml, or remove this block",
                    loaded.span("environments", key=True),
                )
            )
            continue
        for name in blocks:
            if name not in names:
                problems.append(
                    make(
                        codes.UNKNOWN_ENVIRONMENT,
                        f"environment '{name}' is not declared in project.yaml (declared: "
                        f"{', '.join(names)}){did_you_mean(name, list(names))}",
                        loaded.span("environments", name, key=True),
                    )
                )
    return problems


def _check_settings_problems(
    loaded: Loaded, project: Project, names: Sequence[str]
) -> list[Diagnostic]:
    """`check: {environments: {NAME: ...}}` must name declared environments."""
    problems = []
    for name in project.check.environments:
        if name not in names:
            declared_names = ", ".join(names) or "none"
            problems.append(
                make(
                    codes.UNKNOWN_ENVIRONMENT,
                    f"check settings name environment '{name}', which is not declared "
                    f"(declared: {declared_names}){did_you_mean(name, list(names))}",
                    loaded.span("check", "environments", name, key=True),
                )
            )
    seen: set[str] = set()
    for index, name in enumerate(project.environments):
        if name in seen:
            problems.append(
                make(
                    codes.INVALID_VALUE,
                    f"environment '{name}' is declared twice; list each once, in promotion order",
                    loaded.span("environments", index),
                )
            )
        seen.add(name)
    return problems


def in_each(
    objects: Mapping[str, Loaded],
    names: Sequence[str],
    checked: Mapping[str, list[Diagnostic]],
    relatives: Mapping[str, str],
    invalid_keys: set[str],
    project: Project | None,
    lint_after: bool = True,
) -> tuple[tuple[Environment, ...], list[Diagnostic]]:
    """Link and lint every environment; `checked` holds each object's one-object
    diagnostics as read (an object that varies is checked again in each environment,
    `relatives` giving its file's path below the definitions folder). Lint runs in an
    environment where nothing blocks, and only when `lint_after` (no file failed).

    Returns the environments (one unnamed one without `names`) and the diagnostics,
    merged over the environments they hold in."""
    if not names:
        catalog, problems = build(dict(objects), invalid_keys)
        found = [d for key in objects for d in checked.get(key, [])] + problems
        found += private_problems(objects, project)
        if lint_after and not _blocks(found):
            found += lint(catalog, project)
        return (Environment(None, objects, catalog),), found
    environments = []
    tagged: list[tuple[Diagnostic, str]] = []
    for name in names:
        here = {key: loaded.at(name) for key, loaded in objects.items()}
        found = []
        for key, loaded in here.items():
            if loaded is not objects[key]:
                found += check_object(loaded, relatives[key])
            else:
                found += checked.get(key, [])
        catalog, problems = build(here, invalid_keys)
        found += problems
        found += private_problems(here, project)
        if lint_after and not _blocks(found):
            found += lint(catalog, project)
        environments.append(Environment(name, here, catalog))
        tagged += [(d, name) for d in found]
    return tuple(environments), merged(tagged, names)


def _blocks(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def merged(tagged: Iterable[tuple[Diagnostic, str]], names: Sequence[str]) -> list[Diagnostic]:
    """One diagnostic for each found in several environments; those that do not hold
    in all of them say where they hold."""
    where: dict[tuple[object, ...], tuple[Diagnostic, list[str]]] = {}
    for diagnostic, name in tagged:
        identity = (diagnostic.sort_key(), diagnostic.notes, diagnostic.severity)
        _first, found_in = where.setdefault(identity, (diagnostic, []))
        if name not in found_in:
            found_in.append(name)
    result = []
    for diagnostic, found_in in where.values():
        if len(found_in) < len(names):
            ordered = [name for name in names if name in found_in]
            message = f"{diagnostic.message} (in {', '.join(ordered)})"
            diagnostic = replace(diagnostic, message=message)
        result.append(diagnostic)
    return sorted_diagnostics(result)
