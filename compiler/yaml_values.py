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

from compiler import codes
from compiler.diagnostics import Code

# A definition has a few hundred nodes; aliases expanding past this are an attack.
MAX_NODES_PER_FILE = 100_000

TAG_PREFIX = "tag:yaml.org,2002:"
STR_TAG = TAG_PREFIX + "str"
_KEYWORDS = frozenset(["null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE"])
_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(inf|Inf|INF)\Z|\.(nan|NaN|NAN)\Z")

_EXPLICIT: dict[str, Callable[[str], Any]] = {
    TAG_PREFIX + "str": str,
    TAG_PREFIX + "int": int,
    TAG_PREFIX + "float": Decimal,
    TAG_PREFIX + "bool": lambda v: {"true": True, "false": False}[v.lower()],
    TAG_PREFIX + "null": lambda v: None,
}


class SourceError(Exception):
    """A file that cannot become plain values; line and column are 1-based."""

    def __init__(self, code: Code, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column


def error_at(code: Code, message: str, mark: Any) -> SourceError:
    return SourceError(code, message, mark.line + 1, mark.column + 1)


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
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text) and any(ch.isdigit() for ch in text):
        return Decimal(text)
    if _SPECIAL_FLOAT.match(text):
        raise ValueError("infinity and NaN are not allowed")
    return text


def scalar_value(event: Any) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        # `!` and quoting both mean "a string"; only untagged plain scalars resolve.
        if tag is None and not event.style:
            try:
                return resolve_plain(event.value)
            except ValueError as error:
                raise error_at(codes.INVALID_VALUE, str(error), event.start_mark) from error
        return event.value
    convert = _EXPLICIT.get(tag)
    if convert is None:
        raise error_at(
            codes.UNSUPPORTED_TAG,
            f"tag {tag!r} is not supported; remove it and write a plain value",
            event.start_mark,
        )
    try:
        return convert(event.value)
    except (ValueError, KeyError, ArithmeticError) as error:
        raise error_at(
            codes.YAML_SYNTAX, f"{event.value!r} is not a valid {tag}", event.start_mark
        ) from error


def _mapping_key(value: Any, event: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)  # `1:` under `pinned` names slot 1
    raise error_at(codes.YAML_SYNTAX, "mapping keys must be text; quote this one", event.start_mark)


_NO_KEY = object()


class _Frame:
    """An open mapping or sequence while its events arrive."""

    __slots__ = ("anchor", "container", "key", "key_event", "nodes_before")

    def __init__(self, container: Any, anchor: str | None, nodes_before: int) -> None:
        self.container = container
        self.anchor = anchor
        self.nodes_before = nodes_before
        self.key: Any = _NO_KEY
        self.key_event: Any = None


class ValueBuilder:
    """Consumes the events of one document and returns its value."""

    def __init__(self) -> None:
        self.nodes = 0
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.stack: list[_Frame] = []
        self.root: Any = None

    def build(self, next_event: Callable[[], Any]) -> Any:
        while True:
            event = next_event()
            kind = type(event)
            if kind is events.ScalarEvent:
                self._count(1, event)
                value = scalar_value(event)
                if event.anchor:
                    self.anchors[event.anchor] = (value, 1)
                self._attach(value, event)
            elif kind is events.MappingStartEvent or kind is events.SequenceStartEvent:
                self._count(1, event)
                if self.stack and self._awaiting_key():
                    raise error_at(
                        codes.YAML_SYNTAX, "mapping keys must be plain text", event.start_mark
                    )
                container: Any = {} if kind is events.MappingStartEvent else []
                self.stack.append(_Frame(container, event.anchor, self.nodes))
            elif kind is events.MappingEndEvent or kind is events.SequenceEndEvent:
                frame = self.stack.pop()
                if frame.anchor:
                    self.anchors[frame.anchor] = (frame.container, self.nodes - frame.nodes_before)
                self._attach(frame.container, event)
            elif kind is events.AliasEvent:
                value, size = self._alias(event)
                self._count(size, event)
                self._attach(value, event)
            if not self.stack:
                return self.root  # the document was a single scalar or alias

    def _alias(self, event: Any) -> tuple[Any, int]:
        try:
            return self.anchors[event.anchor]
        except KeyError:
            raise error_at(
                codes.YAML_SYNTAX, f"alias *{event.anchor} names no anchor", event.start_mark
            ) from None

    def _count(self, size: int, event: Any) -> None:
        self.nodes += size
        if self.nodes > MAX_NODES_PER_FILE:
            raise error_at(
                codes.ALIAS_EXPANSION,
                f"anchors and aliases expand to more than {MAX_NODES_PER_FILE} nodes; "
                "write the values out instead of nesting aliases",
                event.start_mark,
            )

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
