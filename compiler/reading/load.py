"""Find definition files, read them, and turn each into a typed model or diagnostics."""

from __future__ import annotations

import difflib
import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expc import codes
from expc.diagnostics import Code, Diagnostic, Span, make
from expc.reading.model import KINDS, AnyDefinition
from expc.reading.source import SourceFile
from expc.reading.yaml_values import SourceError
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


@dataclass(frozen=True)
class Loaded:
    """A definition that passed the shape checks, with the file it came from."""

    source: SourceFile
    definition: AnyDefinition

    def span(self, *path: str | int, key: bool = False) -> Span:
        line, column = self.source.locate(path, key=key)
        return Span(self.source.path, line, column)


@dataclass(frozen=True)
class LoadResult:
    objects: list[Loaded]
    diagnostics: list[Diagnostic]


def nearest(name: str, candidates: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def a_or_an(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    match = nearest(name, candidates)
    return f"; did you mean '{match}'?" if match else ""


# A definition is a few kilobytes; a cohort of 100,000 ids (the node limit) a few
# megabytes. Anything larger is not a definition, and is refused before it is read.
MAX_FILE_BYTES = 10 * 1024 * 1024
SUFFIX = ".yaml"


def definition_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Every `*.yaml` below `root` with its '/'-separated path relative to `root`, in a
    stable order; hidden folders and files are skipped.

    Also listed, for `read_source` to refuse with a located error: files named `*.yml`
    (or `*.YAML`), links that lead outside `root` (to a file or a folder), and folders
    that cannot be listed (their relative path ends in '/'). A file link that stays
    inside is listed as the real path it leads to, so `read_source` never sees a link
    that stays inside; a folder link that stays inside is not followed, because the
    files it leads to are listed where they really are.
    """
    real_root = Path(os.path.realpath(root))
    pending = [(str(root), "")]
    while pending:  # a stack, not recursion: folders may nest deeper than Python recurses
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(
                    (entry for entry in listing if not entry.name.startswith(".")),
                    key=lambda entry: entry.name,
                )
        except OSError:
            if prefix:  # the root's own problem is the caller's: it found no files
                yield Path(directory), prefix
            continue
        folders = []
        for entry in entries:
            if entry.is_symlink():
                listed = _link(entry, real_root)
                if listed is not None:
                    yield listed, prefix + entry.name
            elif entry.is_dir():
                folders.append((entry.path, prefix + entry.name + "/"))
            elif _is_yaml_name(entry.name):
                yield Path(entry.path), prefix + entry.name
        pending.extend(reversed(folders))


def _link(entry: os.DirEntry[str], real_root: Path) -> Path | None:
    """What to list for a link: see `definition_files`."""
    target = Path(os.path.realpath(entry.path))
    try:
        folder = entry.is_dir()
    except OSError:  # a circle of links: listed, so that reading it says so
        folder = False
    if target.is_relative_to(real_root) and target.exists():
        return None if folder or not _is_yaml_name(entry.name) else target
    return Path(entry.path) if folder or _is_yaml_name(entry.name) else None


def _is_yaml_name(name: str) -> bool:
    return name.lower().endswith((".yaml", ".yml"))


def key_of(relative: str) -> str:
    """The key a listed file's name declares: the name without `.yaml` (or `.yml`)."""
    name = relative.rsplit("/", 1)[-1]
    for suffix in (SUFFIX, ".yml"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_source(path: Path, display: str) -> SourceFile | Diagnostic:
    """A file listed by `definition_files`, shown as `display` (which ends with the
    relative path it was listed with)."""
    raw = read_raw(path, display)
    if isinstance(raw, Diagnostic):
        return raw
    return decode_source(raw, display)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Opening a link fails (a link that stays inside is listed as its target), and opening
# a pipe does not wait for a writer.
_OPEN_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)


def read_raw(path: Path, display: str) -> bytes | Diagnostic:
    """The bytes of a listed file, or the diagnostic that refuses it: a folder that
    cannot be listed, a link (listed only when it leads outside), a name other than
    `*.yaml`, anything but a regular file, a file too large to be a definition."""
    span = Span(display)
    if display.endswith("/"):
        return make(codes.UNREADABLE, f"cannot list this folder: {_listing_problem(path)}", span)
    if not display.endswith(SUFFIX) or not _NOFOLLOW:
        if path.is_symlink() and path.exists():
            return _outside(path, span)
        if not display.endswith(SUFFIX):
            return _not_yaml(display, span)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        if path.is_symlink() and path.exists():
            return _outside(path, span)
        return make(codes.UNREADABLE, f"cannot read the file: {_open_problem(path, error)}", span)
    with os.fdopen(descriptor, "rb", buffering=0) as stream:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            return make(
                codes.UNREADABLE,
                "not a regular file (a pipe, socket or device); definitions are plain files",
                span,
            )
        if info.st_size > MAX_FILE_BYTES:
            return _too_large(span)
        return stream.read()  # decode_source refuses it if it grew past the limit


def refuse_name(display: str) -> Diagnostic | None:
    """E013 for a file that is listed but not named `*.yaml` (read from git, say)."""
    return None if display.endswith(SUFFIX) else _not_yaml(display, Span(display))


def _not_yaml(display: str, span: Span) -> Diagnostic:
    name = display.rsplit("/", 1)[-1]
    return make(
        codes.NOT_YAML_EXTENSION,
        f"expc reads only files named *.yaml; rename this one to '{key_of(name)}.yaml' "
        "(its key must be its name without '.yaml')",
        span,
    )


def _listing_problem(folder: Path) -> str:
    try:
        os.scandir(folder).close()
    except OSError as error:
        return str(error.strerror)
    return "it changed while it was being read"


def _open_problem(path: Path, error: OSError) -> str:
    if path.is_symlink():  # a dangling link: say what is missing, not O_NOFOLLOW's ELOOP
        try:
            path.stat()
        except OSError as followed:
            error = followed
    return str(error.strerror)


def _outside(link: Path, span: Span) -> Diagnostic:
    what = "folder" if link.is_dir() else "file"
    return make(
        codes.OUTSIDE_DEFINITIONS,
        f"this {what} is a link to '{link.readlink().as_posix()}', outside the definitions "
        f"directory, where changes are not reviewed with the definitions; move the {what} "
        "into the definitions directory instead of linking to it",
        span,
    )


def _too_large(span: Span) -> Diagnostic:
    return make(
        codes.UNREADABLE,
        f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the most a "
        "definition may be; move it out of the definitions directory, or split a large "
        "cohort into several",
        span,
    )


def decode_source(raw: bytes, display: str) -> SourceFile | Diagnostic:
    if len(raw) > MAX_FILE_BYTES:
        return _too_large(Span(display))
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
    if kind_of_error == "extra_forbidden":
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
