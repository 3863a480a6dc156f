"""Spec files to typed specs, or to located diagnostics: the files are listed and read
by the machinery that reads definitions (`reading/`), with its limits, so a hostile
spec file (deep nesting, tags, control characters, links out, huge files) is a located
error and never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from expc import codes
from expc.diagnostics import Code, Diagnostic, Span, make
from expc.pipeline.snapshot import shown_path
from expc.reading.listing import definition_files, key_of, link_noun, read_raw
from expc.reading.load import decode_source, did_you_mean
from expc.reading.source import PathElement, SourceFile
from expc.reading.yaml_values import SourceError
from expc.specs import codes as spec_codes
from expc.specs.model import Case, Expectation, ShareCheck, Spec


@dataclass(frozen=True)
class SpecFile:
    """One spec that has the shape of a spec, with the file it came from."""

    source: SourceFile
    spec: Spec

    @property
    def path(self) -> str:
        return self.source.path

    def span(self, *path: PathElement, key: bool = False) -> Span:
        line, column = self.source.locate(path, key=key)
        return Span(self.source.path, line, column)


def listed(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """(file, path to show) for every spec file below the given folders and files, in
    a stable order, each once. `*.yml` names and links leading out are listed too, for
    `read` to refuse with a located error."""
    found: dict[Path, tuple[Path, str]] = {}
    for given in paths:
        shown = shown_path(str(given))
        if given.is_dir():
            prefix = "" if shown in ("", ".") else shown.rstrip("/") + "/"
            for path, relative in definition_files(given):
                found.setdefault(path.absolute(), (path, prefix + relative))
        else:
            found.setdefault(given.absolute(), (given, shown))
    return sorted(found.values(), key=lambda item: item[1])


def read(files: Sequence[tuple[Path, str]]) -> tuple[list[SpecFile], list[Diagnostic]]:
    """Every listed file as a typed spec; the diagnostics of those that are not."""
    specs: list[SpecFile] = []
    problems: list[Diagnostic] = []
    for path, shown in files:
        loaded = read_one(path, shown)
        if isinstance(loaded, SpecFile):
            specs.append(loaded)
        else:
            problems.extend(loaded)
    return specs, problems


def read_one(path: Path, shown: str) -> SpecFile | list[Diagnostic]:
    raw = read_raw(path, shown)
    if isinstance(raw, Diagnostic):
        return [_for_specs(raw, path)]
    source = decode_source(raw, shown)
    if isinstance(source, Diagnostic):
        return [source]
    return parse(source)


def parse(source: SourceFile) -> SpecFile | list[Diagnostic]:
    """A spec file's text (already decoded) to a typed spec."""
    try:
        values = source.parse()
    except SourceError as error:
        span = Span(source.path, error.line, error.column)
        message = _SPEC_MESSAGES.get(error.code.id, error.message)
        # libyaml refuses a ':' inside a plain value in { }, which is where a reason
        # such as `mutex:search-ranking` is most often written.
        if error.code is codes.YAML_SYNTAX and "unexpected ':'" in message:
            message += "; inside { } a value holding ':' needs quotes: {reason: \"mutex:KEY\"}"
        return [make(error.code, message, span)]
    try:
        return SpecFile(source, Spec.model_validate(values))
    except ValidationError as error:
        return [_diagnostic(source, e) for e in error.errors()]


# Messages of the reading codes that speak of definitions, said for a spec.
_SPEC_MESSAGES = {
    codes.EMPTY_FILE.id: "the file is empty; write a spec with 'cases', 'shares' or "
    "'exclusive' (docs/specs.md), or delete it",
    codes.NOT_A_MAPPING.id: "the document is not a mapping; a spec is one mapping with "
    "'cases', 'shares' or 'exclusive' at the top level",
    codes.MULTIPLE_DOCUMENTS.id: "a spec file holds one document; move the one after '---' "
    "into a file of its own",
}


def _not_yaml(shown: str) -> Diagnostic:
    name = shown.rsplit("/", 1)[-1]
    return make(
        spec_codes.NOT_YAML_EXTENSION,
        f"expc reads only spec files named *.yaml; rename this one to '{key_of(name)}.yaml' "
        "so that it runs",
        Span(shown),
    )


def _for_specs(problem: Diagnostic, path: Path) -> Diagnostic:
    """A refusal of the definitions' reader, said for the specs folder."""
    if problem.code is codes.NOT_YAML_EXTENSION:
        return _not_yaml(problem.span.path)
    if problem.code is codes.OUTSIDE_DEFINITIONS:
        what = link_noun(path)
        return make(
            spec_codes.OUTSIDE_SPECS,
            f"this {what} is a link to '{path.readlink().as_posix()}', outside the specs "
            f"folder, where changes are not reviewed with the specs; move the {what} into "
            "the specs folder instead of linking to it",
            problem.span,
        )
    return problem


# --- validation errors --------------------------------------------------------------


def _field_path(loc: Sequence[str | int]) -> str:
    text = ""
    for element in loc:
        if isinstance(element, int):
            text += f"[{element}]"
        elif element == "[key]":
            continue
        else:
            text += f".{element}" if text else element
    return text or "(top level)"


def _code(error: ErrorDetails) -> Code:
    kind, loc = error["type"], error["loc"]
    if kind == "not_a_percent":
        return spec_codes.NOT_A_PERCENT
    if kind == "empty_spec":
        return spec_codes.EMPTY_SPEC
    if kind == "extra_forbidden":
        return spec_codes.UNKNOWN_FIELD
    if kind == "missing":
        return spec_codes.MISSING_FIELD
    if len(loc) >= 3 and loc[0] == "cases" and loc[2] == "matrix":
        return spec_codes.MALFORMED_MATRIX
    if loc[:1] == ("environment",):
        return spec_codes.ENVIRONMENT
    return spec_codes.INVALID_VALUE


# The fields of each place a field can be unknown in, for did-you-mean.
_SPEC_FIELDS = tuple(Spec.model_fields)
_CASE_FIELDS = tuple(Case.model_fields)
_SHARE_FIELDS = tuple(ShareCheck.model_fields)
_EXPECT_FIELDS = tuple(Expectation.model_fields)


def _known_fields(loc: Sequence[str | int]) -> tuple[str, ...]:
    parent = tuple(loc[:-1])
    if not parent:
        return _SPEC_FIELDS
    if len(parent) == 2 and parent[0] == "cases":
        return _CASE_FIELDS
    if len(parent) == 2 and parent[0] == "shares":
        return _SHARE_FIELDS
    if len(parent) == 4 and parent[0] == "cases" and parent[2] == "expect":
        return _EXPECT_FIELDS
    return ()


def _diagnostic(source: SourceFile, error: ErrorDetails) -> Diagnostic:
    loc = error["loc"]
    code = _code(error)
    field = _field_path(loc)
    if code is spec_codes.UNKNOWN_FIELD:
        name = str(loc[-1])
        message = f"unknown field '{field}' in this spec; remove it or fix its spelling"
        message += did_you_mean(name, list(_known_fields(loc)))
        line, column = source.locate(loc, key=True)
    elif code is spec_codes.MISSING_FIELD:
        message = f"missing required field '{field}'; add it"
        line, column = source.locate(loc[:-1])
    elif code is spec_codes.EMPTY_SPEC:
        message = str(error["msg"])
        line, column = 1, 1
    elif code is spec_codes.ENVIRONMENT and error["type"] in ("list_type", "string_type"):
        message = (
            f"{field}: must be the name of an environment, or a list of names; "
            f"got {_describe(error.get('input'))}"
        )
        line, column = source.locate(loc)
    elif code is spec_codes.MALFORMED_MATRIX and loc[-1] == "[key]":
        message = (
            f"{field}: the name '{loc[-2]}' is not a matrix name; use letters, digits and "
            "'_', starting with a letter or '_', so that '${name}' can refer to it"
        )
        line, column = source.locate(loc[:-1], key=True)
    else:
        message = f"{field}: {_plain_message(error)}"
        if error["type"] not in ("not_a_percent", "matrix_value", "value_error"):
            message += f"; got {_describe(error.get('input'))}"
        line, column = source.locate(loc)
    return make(code, message, Span(source.path, line, column))


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain_message(error: ErrorDetails) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "too_short":
        return f"needs at least {context.get('min_length')} item(s)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"]).rstrip(".")
