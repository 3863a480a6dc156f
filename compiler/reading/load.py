"""One definitions file to a typed model, or to the diagnostics that say why not."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from expc import codes
from expc.diagnostics import Code, Diagnostic, Span, make
from expc.reading.listing import MAX_FILE_BYTES, read_raw, too_large
from expc.reading.model import (
    KINDS,
    PRIVATE_ATTRIBUTE_PATTERN,
    RUNTIME_FIELDS,
    AnyDefinition,
    Project,
    at_environment,
)
from expc.reading.source import SourceFile
from expc.reading.yaml_values import SourceError


@dataclass(frozen=True)
class Loaded:
    """A definition that passed the shape checks, with the file it came from.

    In one environment (`at`), `definition` has that environment's values, and a place
    in a field the environment sets is the place in its `environments:` block.
    """

    source: SourceFile
    definition: AnyDefinition
    environment: str | None = None
    environment_fields: frozenset[str] = frozenset()

    def span(self, *path: str | int, key: bool = False) -> Span:
        if path and path[0] in self.environment_fields:
            path = ("environments", str(self.environment), *path)
        line, column = self.source.locate(path, key=key)
        return Span(self.source.path, line, column)

    def at(self, environment: str) -> Loaded:
        """The object in `environment` (itself when it sets nothing there)."""
        definition = self.definition
        if isinstance(definition, Project) or environment not in definition.environments:
            return self
        values = definition.environments[environment]
        return Loaded(
            self.source,
            at_environment(self.definition, environment),
            environment,
            frozenset(values.model_fields_set),
        )


def nearest(name: str, candidates: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def a_or_an(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    match = nearest(name, candidates)
    return f"; did you mean '{match}'?" if match else ""


def read_source(path: Path, display: str) -> SourceFile | Diagnostic:
    """A file listed by `definition_files`, shown as `display` (which ends with the
    relative path it was listed with)."""
    raw = read_raw(path, display)
    if isinstance(raw, Diagnostic):
        return raw
    return decode_source(raw, display)


def decode_source(raw: bytes, display: str) -> SourceFile | Diagnostic:
    if len(raw) > MAX_FILE_BYTES:
        return too_large(Span(display))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        before = raw[: error.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        return make(
            codes.NOT_UTF8,
            f"byte 0x{raw[error.start]:02x} is not UTF-8; save the file as UTF-8",
            Span(display, line, column),
        )
    return SourceFile(display, text.removeprefix("\ufeff"))


def load_object(source: SourceFile) -> Loaded | list[Diagnostic]:
    try:
        data = source.parse()
    except SourceError as error:
        return [make(error.code, error.message, Span(source.path, error.line, error.column))]
    return load_values(source, data)


def load_values(source: SourceFile, data: dict[str, Any]) -> Loaded | list[Diagnostic]:
    """The typed model of the values read from `source` (by YAML, or from the cache)."""
    kind = data.get("kind")
    if kind is None:
        return [make(codes.MISSING_FIELD, _missing_kind_message(), Span(source.path))]
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        line, column = source.locate(("kind",))
        hint = did_you_mean(str(kind), list(KINDS))
        return [
            make(
                codes.UNKNOWN_KIND,
                f"unknown kind {kind!r}; use one of {', '.join(KINDS)}{hint}",
                Span(source.path, line, column),
            )
        ]
    try:
        definition: AnyDefinition = model.model_validate(data)  # type: ignore[assignment]
    except ValidationError as error:
        return [_diagnostic(source, model, e) for e in error.errors()]
    return Loaded(source, definition)


def _missing_kind_message() -> str:
    return f"missing required field 'kind'; add one of: {', '.join(KINDS)}"


def _field_path(loc: Sequence[str | int]) -> str:
    text = ""
    for element in loc:
        if isinstance(element, int):
            text += f"[{element}]"
        elif element in {"all", "any", "condition"} or "[" in element:
            continue  # pydantic's union tags, not fields
        else:
            text += f".{element}" if text else element
    return text or "(top level)"


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False) if value is not None else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."


def _diagnostic(source: SourceFile, model: type[BaseModel], error: ErrorDetails) -> Diagnostic:
    kind = model.__name__.lower()
    loc = error["loc"]
    field = _field_path(loc)
    kind_of_error = error["type"]
    code: Code = codes.INVALID_VALUE
    if kind_of_error == "extra_forbidden" and len(loc) == 3 and loc[0] == "environments":
        code = codes.NOT_PER_ENVIRONMENT
        name, environment = str(loc[2]), str(loc[1])
        allowed = ", ".join(RUNTIME_FIELDS.get(kind, ())) or "nothing"
        message = (
            f"'{name}' cannot vary by environment (environment '{environment}'): structure "
            f"is the same everywhere, so that a user lands in the same slot and variant in "
            f"every environment; {a_or_an(kind)}'s environments may set only: {allowed}"
        )
        line, column = source.locate(loc, key=True)
    elif kind_of_error == "extra_forbidden":
        code = codes.UNKNOWN_FIELD
        name = str(loc[-1])  # the name as written, whatever characters it holds
        parent = _field_path(loc[:-1])
        field = name if parent == "(top level)" else f"{parent}.{name}"
        message = f"unknown field '{field}' in this {kind}; remove it or fix its spelling"
        line, column = source.locate(loc, key=True)
        if len(loc) == 1:
            message += did_you_mean(name, list(model.model_fields))
    elif kind_of_error == "missing":
        code = codes.MISSING_FIELD
        message = f"missing required field '{field}'; add it"
        line, column = source.locate(loc[:-1])
    else:
        message = f"{field}: {_plain_message(error)}; got {_describe(error.get('input'))}"
        line, column = source.locate(loc)
    return make(code, message, Span(source.path, line, column))


def _plain_message(error: ErrorDetails) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        if context.get("pattern") == PRIVATE_ATTRIBUTE_PATTERN:
            return (
                "must be an attribute name: 1 to 64 letters, digits, '_', '.', ':' or '-', "
                "starting with a letter or '_' (no '#': digests are compared as '<name>#sha256')"
            )
        if "a-z0-9_-" in str(context.get("pattern", "")):
            return (
                "must be a key: 1 to 64 of lowercase letters, digits, '-' and '_', "
                "starting with a letter or digit"
            )
        return "must be 1 to 64 letters, digits, '.', '-' or '_'"
    if kind == "decimal_max_places":
        return "at most two decimals (basis points); round it"
    if kind == "too_short":
        return f"needs at least {context.get('min_length')} item(s)"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"]).rstrip(".")
