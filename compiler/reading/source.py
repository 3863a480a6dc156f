"""A definitions file: its text, its values, and the position of anything in it.

Values come from `yaml_values` (libyaml events, no node tree). When a diagnostic needs
a line and column, the file is composed again into ruamel's node tree, which keeps
every node's position; that happens only for the rare file with a problem, and only
for text that `yaml_values` has read within its limits: ruamel's composer recurses in
C, once per level, and a deep enough file would overflow the stack.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import events
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from expc import codes
from expc.reading.yaml_values import (
    MAP_TAG,
    SEQ_TAG,
    STR_TAG,
    SourceError,
    ValueBuilder,
    error_at,
)

_DEFAULT_TAGS = {"scalar": STR_TAG, "sequence": SEQ_TAG, "mapping": MAP_TAG}
# libyaml's line breaks, so that a position computed here agrees with its marks.
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")

CParserWithoutResolver: Any
try:
    from _ruamel_yaml import CParser

    class CParserWithoutResolver(CParser):  # type: ignore[no-redef,misc]
        """libyaml's parser and composer with a resolver that does nothing.

        ruamel's own C loaders mix in a Python resolver that is called for every node and
        refers to the loader itself, so each loader is cyclic garbage. Scalars are
        resolved by `yaml_values` instead, and this object is freed when dropped.
        """

        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            return _DEFAULT_TAGS[kind.id]

        def descend_resolver(self, parent: Any, index: Any) -> None:
            pass

        def ascend_resolver(self) -> None:
            pass

except ImportError:  # pragma: no cover - only without ruamel.yaml.clib
    CParserWithoutResolver = None

PathElement = str | int


def _pure_yaml() -> Any:  # pragma: no cover - only without ruamel.yaml.clib
    from ruamel.yaml import YAML

    return YAML(typ="base", pure=True)


def _compose(text: str) -> Any:
    if CParserWithoutResolver is None:  # pragma: no cover
        return _pure_yaml().compose(text)
    parser = CParserWithoutResolver(text)
    try:
        return parser.get_single_node()
    finally:
        parser.dispose()


def _read_document(text: str) -> tuple[bool, Any]:
    """(whether the stream holds a document, its value); one document at most.

    Every problem is a `SourceError`.
    """
    try:
        if CParserWithoutResolver is None:  # pragma: no cover
            return _read_events(iter(_pure_yaml().parse(text)).__next__)
        parser = CParserWithoutResolver(text)
        try:
            return _read_events(parser.get_event)
        finally:
            parser.dispose()
    except ReaderError as error:
        raise _disallowed_character(text, error) from error
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = error.problem or error.context or "invalid YAML"
        raise SourceError(codes.YAML_SYNTAX, f"YAML syntax: {problem}", line, column) from error
    except YAMLError as error:  # pragma: no cover - libyaml reports marked errors
        raise SourceError(codes.YAML_SYNTAX, f"YAML syntax: {error}") from error


def _disallowed_character(text: str, error: ReaderError) -> SourceError:
    """E011 at the character libyaml refused; its offset counts UTF-8 bytes."""
    before = text.encode("utf-8")[: error.position].decode("utf-8", "replace")
    breaks = list(_LINE_BREAK.finditer(before))
    line = len(breaks) + 1
    column = len(before) - (breaks[-1].end() if breaks else 0) + 1
    code = error.character if isinstance(error.character, int) else ord(error.character)
    name = f"U+{code:04X}"
    if code < 0x20 or 0x7F <= code <= 0x9F:
        what = "control character " + name + (" (NUL)" if code == 0 else "")
    else:
        what = "character " + name
    message = (
        f"{what} is not allowed in YAML; delete it, or write "
        f'"\\u{code:04x}" inside double quotes if a value needs it'
    )
    if code == 0:
        message += " (NULs between all letters mean the file is UTF-16: save it as UTF-8)"
    return SourceError(codes.CONTROL_CHARACTER, message, line, column)


def _read_events(next_event: Callable[[], Any]) -> tuple[bool, Any]:
    next_event()  # stream start
    if isinstance(next_event(), events.StreamEndEvent):
        return False, None
    value = ValueBuilder().build(next_event)
    next_event()  # document end
    after = next_event()
    if not isinstance(after, events.StreamEndEvent):
        raise error_at(
            codes.MULTIPLE_DOCUMENTS,
            "a definitions file holds one document; move the one after '---' into a "
            "file of its own",
            after.start_mark,
        )
    return True, value


def _position(node: Any) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


@dataclass
class SourceFile:
    """One definitions file: its text, its values, and positions on demand."""

    path: str
    text: str
    _root: Any = field(default=None, repr=False)
    # whether the text has been read within the limits, so that composing it is safe
    _read: bool = field(default=False, repr=False)

    def parse(self) -> dict[str, Any]:
        """Return the single top-level mapping, or raise `SourceError`."""
        has_document, value = _read_document(self.text)
        self._read = True
        if not has_document or value is None:
            raise SourceError(
                codes.EMPTY_FILE,
                "the file is empty; write one object with 'kind' and 'key', or delete it",
            )
        if not isinstance(value, dict):
            shape = "sequence" if isinstance(value, list) else "single value"
            raise SourceError(
                codes.NOT_A_MAPPING,
                f"the document is a {shape}, not a mapping; write one object with "
                "'kind' and 'key' at the top level",
            )
        return value

    def locate(self, path: Sequence[PathElement], *, key: bool = False) -> tuple[int, int]:
        """Line and column of the value at `path` (or of its key), as near as exists.

        Elements that do not name a child (pydantic's union tags, for instance) are
        skipped, so a validation error's location maps onto the text. A text that is
        not readable YAML within the limits has no positions: (1, 1).
        """
        node = self._root
        if node is None:
            try:
                if not self._read:
                    _read_document(self.text)
                    self._read = True
                node = self._root = _compose(self.text)
            except (SourceError, YAMLError):
                return 1, 1
        if node is None:
            return 1, 1
        key_node = None
        for element in path:
            child = _child(node, element)
            if child is None:
                continue
            key_node, node = child
        if key and key_node is not None:
            return _position(key_node)
        return _position(node)


def _child(node: Any, element: PathElement) -> tuple[Any, Any] | None:
    if node.id == "mapping" and isinstance(element, str):
        for key_node, value_node in node.value:
            if key_node.id == "scalar" and key_node.value == element:
                return key_node, value_node
    if node.id == "sequence" and isinstance(element, int) and 0 <= element < len(node.value):
        return node.value[element], node.value[element]
    return None
