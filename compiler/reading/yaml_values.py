"""YAML text to plain Python values, straight from libyaml's events.

Building values from events skips ruamel's node tree (and its tag objects and
resolver calls), which makes reading a definition about a quarter faster; positions
come from the node tree later, and only for a file that has a diagnostic (`source`).

Plain scalars are resolved by the YAML 1.2 core schema, so `NO`, `yes`, `on` and `off`
stay strings. Non-integer numbers become `Decimal`, never `float`: percents are checked
to two decimals exactly, and bundles hold no floats.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ruamel.yaml import events

from expc import codes
from expc.diagnostics import Code

# A definition has a few hundred nodes; aliases expanding past this are an attack.
MAX_NODES_PER_FILE = 100_000
# Definitions nest about ten levels of mappings and lists (a payload or a targeting tree
# a few more). Reading stops at the first one past this, so nothing that walks values
# later (pydantic, json, the composer behind `source.locate`) recurses any deeper.
MAX_DEPTH = 64
# The most digits a number may need when written out in full: Python's own limit for
# turning an int into text, which a bundle does with every number.
MAX_NUMBER_DIGITS = 4300
_INT_LIMIT = 10**MAX_NUMBER_DIGITS

TAG_PREFIX = "tag:yaml.org,2002:"
STR_TAG = TAG_PREFIX + "str"
MAP_TAG = TAG_PREFIX + "map"
SEQ_TAG = TAG_PREFIX + "seq"
_KEYWORDS = frozenset(["null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE"])
_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(inf|Inf|INF)\Z|\.(nan|NaN|NAN)\Z")


class SourceError(Exception):
    """A file that cannot become plain values; line and column are 1-based."""

    def __init__(self, code: Code, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column


class _RefusedError(ValueError):
    """A well-formed value that expc does not accept (E103), unlike a malformed one."""


def error_at(code: Code, message: str, mark: Any) -> SourceError:
    return SourceError(code, message, mark.line + 1, mark.column + 1)


def shown_tag(tag: str) -> str:
    """A tag as it is usually written: `!!int` rather than its full URI."""
    return "!!" + tag.removeprefix(TAG_PREFIX) if tag.startswith(TAG_PREFIX) else tag


def _shown_text(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def _integer(text: str, base: int) -> int:
    if base == 10 and len(text.lstrip("+-")) > MAX_NUMBER_DIGITS:
        raise _RefusedError(_too_long())  # before int(), which refuses them less helpfully
    try:
        value = int(text, base)
    except ValueError:  # a lower limit set through PYTHONINTMAXSTRDIGITS
        raise _RefusedError(_too_long()) from None
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise _RefusedError(_too_long())
    return value


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:  # an exponent beyond what Decimal holds
        raise _RefusedError(_too_long()) from None
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: the patterns admit no NaN or infinity
    written = len(digits) + exponent if exponent >= 0 else max(len(digits), -exponent) + 1
    if written > MAX_NUMBER_DIGITS:
        raise _RefusedError(_too_long())
    return value


def _too_long() -> str:
    return (
        f"a number longer than {MAX_NUMBER_DIGITS} digits when written out; "
        "quote it if it is text, or write a smaller number"
    )


def resolve_plain(text: str) -> Any:
    """YAML 1.2 core schema for an untagged plain scalar."""
    if text and text[0].isalpha() and text not in _KEYWORDS:
        return text  # most values are words: skip the number patterns
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    number = _number(text)
    return text if number is None else number


def _number(text: str) -> int | Decimal | None:
    """The core schema's int or float written as `text`, None when it is neither."""
    if _INT.match(text):
        return _integer(text, 10)
    if _OCT.match(text):
        return _integer(text[2:], 8)
    if _HEX.match(text):
        return _integer(text[2:], 16)
    if _FLOAT.match(text) and any(ch.isdigit() for ch in text):
        return _decimal(text)
    if _SPECIAL_FLOAT.match(text):
        raise _RefusedError("infinity and NaN are not allowed")
    return None


def _explicit_int(text: str) -> int:
    number = _number(text)
    if not isinstance(number, int):
        raise ValueError(text)
    return number


def _explicit_float(text: str) -> Decimal:
    number = _number(text)
    if number is None:
        raise ValueError(text)
    return Decimal(number)


def _explicit_bool(text: str) -> bool:
    return {"true": True, "false": False}[text.lower()]


_EXPLICIT: dict[str, Callable[[str], Any]] = {
    TAG_PREFIX + "str": str,
    TAG_PREFIX + "int": _explicit_int,
    TAG_PREFIX + "float": _explicit_float,
    TAG_PREFIX + "bool": _explicit_bool,
    TAG_PREFIX + "null": lambda v: None,
}


def scalar_value(event: Any) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        # `!` and quoting both mean "a string"; only untagged plain scalars resolve.
        if tag is None and not event.style:
            try:
                return resolve_plain(event.value)
            except _RefusedError as error:
                raise error_at(codes.INVALID_VALUE, str(error), event.start_mark) from error
        return event.value
    convert = _EXPLICIT.get(tag)
    if convert is None:
        raise error_at(
            codes.UNSUPPORTED_TAG,
            f"tag '{shown_tag(tag)}' is not supported; remove it and write a plain value",
            event.start_mark,
        )
    try:
        return convert(event.value)
    except _RefusedError as error:
        raise error_at(codes.INVALID_VALUE, str(error), event.start_mark) from error
    except (ValueError, KeyError) as error:
        raise error_at(
            codes.YAML_SYNTAX,
            f"{_shown_text(event.value)} is not a valid {shown_tag(tag)}",
            event.start_mark,
        ) from error


def _collection_tag_error(event: Any, what: str) -> SourceError:
    return error_at(
        codes.UNSUPPORTED_TAG,
        f"tag '{shown_tag(event.tag)}' is not supported on a {what}; remove it and write "
        f"a plain {what}",
        event.start_mark,
    )


def _too_deep(event: Any, through: str = "") -> SourceError:
    return error_at(
        codes.TOO_DEEP,
        f"mappings and lists nest more than {MAX_DEPTH} levels deep here{through}; "
        "definitions need about ten: flatten this value (a deep payload can be a JSON "
        "string instead)",
        event.start_mark,
    )


def _mapping_key(value: Any, event: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)  # `1:` under `pinned` names slot 1
    raise error_at(codes.YAML_SYNTAX, "mapping keys must be text; quote this one", event.start_mark)


_NO_KEY = object()


class _Frame:
    """An open mapping or sequence while its events arrive."""

    __slots__ = ("anchor", "container", "depth", "key", "nodes_before", "reached_before")

    def __init__(self, container: Any, anchor: str | None, nodes_before: int, depth: int) -> None:
        self.container = container
        self.anchor = anchor
        self.nodes_before = nodes_before
        self.depth = depth  # 1 for the document's own mapping
        self.reached_before = 0  # for an anchor: the builder's `reached` when it opened
        self.key: Any = _NO_KEY


class ValueBuilder:
    """Consumes the events of one document and returns its value.

    Every limit is checked on the event that crosses it, so reading stops there:
    `MAX_NODES_PER_FILE` (aliases count as the nodes they repeat), `MAX_DEPTH` (an
    alias counts as deep as the value it repeats) and the core tags.
    """

    def __init__(self) -> None:
        self.nodes = 0
        self.aliased = False  # whether an alias repeated more than one node
        # anchor -> (value, nodes in it, levels of mappings and lists in it)
        self.anchors: dict[str, tuple[Any, int, int]] = {}
        self.stack: list[_Frame] = []
        self.root: Any = None
        # The deepest level reached, since the innermost open anchor opened (so that
        # an anchor knows how many levels it holds), aliases included.
        self.reached = 0

    def build(self, next_event: Callable[[], Any]) -> Any:
        stack = self.stack
        scalar_event = events.ScalarEvent
        while True:
            event = next_event()
            kind = type(event)
            if kind is scalar_event:
                # The common case, inlined: a plain value into an open mapping or list
                # (scalars are most of a file's events; method calls per event were a
                # fifth of reading time).
                self.nodes += 1
                if self.nodes > MAX_NODES_PER_FILE:
                    self._count(0, event)
                value = scalar_value(event)
                if event.anchor:
                    self.anchors[event.anchor] = (value, 1, 0)
                frame = stack[-1] if stack else None
                if frame is None:
                    self.root = value
                elif type(frame.container) is list:
                    frame.container.append(value)
                elif frame.key is not _NO_KEY:
                    frame.container[frame.key] = value
                    frame.key = _NO_KEY
                else:
                    self._attach(value, event)  # a key: checked for type and repeats
            elif kind is events.MappingStartEvent:
                self._open({}, event, MAP_TAG, "mapping")
            elif kind is events.SequenceStartEvent:
                self._open([], event, SEQ_TAG, "list")
            elif kind is events.MappingEndEvent or kind is events.SequenceEndEvent:
                frame = stack.pop()
                if frame.anchor:
                    size = self.nodes - frame.nodes_before
                    levels = self.reached - frame.depth + 1
                    self.anchors[frame.anchor] = (frame.container, size, levels)
                    self.reached = max(self.reached, frame.reached_before)
                self._attach(frame.container, event)
            elif kind is events.AliasEvent:
                value, size, levels = self._alias(event)
                self._count(size, event)
                reached = len(stack) + levels
                if reached > MAX_DEPTH:
                    raise _too_deep(event, f" (through alias *{event.anchor})")
                self.reached = max(self.reached, reached)
                self._attach(value, event)
            if not stack:
                return self.root  # the document was a single scalar or alias

    def _open(self, container: Any, event: Any, own_tag: str, what: str) -> None:
        self._count(1, event)
        tag = event.tag
        if tag is not None and tag != "!" and tag != own_tag:
            raise _collection_tag_error(event, what)
        stack = self.stack
        depth = len(stack) + 1
        if depth > MAX_DEPTH:
            raise _too_deep(event)
        if stack and self._awaiting_key():
            raise error_at(codes.YAML_SYNTAX, "mapping keys must be plain text", event.start_mark)
        frame = _Frame(container, event.anchor, self.nodes, depth)
        if event.anchor:
            frame.reached_before, self.reached = self.reached, depth
        elif depth > self.reached:
            self.reached = depth
        stack.append(frame)

    def _alias(self, event: Any) -> tuple[Any, int, int]:
        try:
            return self.anchors[event.anchor]
        except KeyError:
            raise error_at(
                codes.YAML_SYNTAX, f"alias *{event.anchor} names no anchor", event.start_mark
            ) from None

    def _count(self, size: int, event: Any) -> None:
        self.nodes += size
        if size > 1:
            self.aliased = True
        if self.nodes > MAX_NODES_PER_FILE:
            message = (
                f"anchors and aliases expand to more than {MAX_NODES_PER_FILE} nodes; "
                "write the values out instead of nesting aliases"
                if self.aliased
                else f"the file holds more than {MAX_NODES_PER_FILE} values, where a "
                "definition holds a few hundred; split it (a large cohort into several)"
            )
            raise error_at(codes.ALIAS_EXPANSION, message, event.start_mark)

    def _awaiting_key(self) -> bool:
        frame = self.stack[-1]
        return isinstance(frame.container, dict) and frame.key is _NO_KEY

    def _attach(self, value: Any, event: Any) -> None:
        if not self.stack:
            self.root = value
            return
        frame = self.stack[-1]
        container = frame.container
        if isinstance(container, list):
            container.append(value)
        elif frame.key is _NO_KEY:
            key = _mapping_key(value, event)
            if key in container:
                raise error_at(
                    codes.DUPLICATE_KEY,
                    f"duplicate key {key!r}; each key may appear once in a mapping, "
                    "remove or merge the repeated one",
                    event.start_mark,
                )
            frame.key = key
        else:
            container[frame.key] = value
            frame.key = _NO_KEY
