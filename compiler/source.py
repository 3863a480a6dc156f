"""YAML text to plain values, keeping the node tree only to locate diagnostics.

Reading uses ruamel.yaml's C composer when it is installed (ten times faster than the
pure one) and resolves plain scalars ourselves by the YAML 1.2 core schema, so `NO`,
`yes`, `on` and `off` stay strings. Non-integer numbers become `Decimal`, never
`float`: percents are checked to two decimals exactly, and bundles hold no floats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ruamel.yaml.error import MarkedYAMLError

from compiler import codes
from compiler.diagnostics import Code

_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_DEFAULT_TAGS = {"scalar": _STR, "sequence": _TAG + "seq", "mapping": _TAG + "map"}

CComposer: Any
try:
    from ruamel.yaml.cyaml import CParser

    class CComposer(CParser):  # type: ignore[misc,no-any-unimport]
        """libyaml's composer with a resolver that does nothing.

        ruamel's own C loaders mix in a Python resolver that is called for every node and
        refers to the loader itself, so each loader is cyclic garbage. Tags are resolved
        by `_resolve_plain` instead, and this object is freed as soon as it is dropped.
        """

        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            return _DEFAULT_TAGS[kind.id]

        def descend_resolver(self, parent: Any, index: Any) -> None:
            pass

        def ascend_resolver(self) -> None:
            pass

except ImportError:  # pragma: no cover - only without ruamel.yaml.clib
    CComposer = None

# A definition has a few hundred nodes; aliases expanding past this are an attack.
MAX_NODES_PER_FILE = 100_000

PathElement = str | int
YamlPath = tuple[PathElement, ...]

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


def _compose(text: str) -> Any:
    if CComposer is None:  # pragma: no cover
        from ruamel.yaml import YAML

        return YAML(typ="base", pure=True).compose(text)
    loader = CComposer(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _position(node: Any) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


_KEYWORDS = frozenset(["null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE"])


def _tag(node: Any) -> str:
    # `node.tag` builds a string through a property on every call; the C composer
    # always hands over plain tag strings, kept as the suffix.
    ctag = node.ctag
    return str(ctag.suffix) if ctag.handle is None else str(ctag)


def _resolve_plain(text: str) -> Any:
    """YAML 1.2 core schema for untagged plain scalars."""
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


def _scalar(node: Any) -> Any:
    tag = _tag(node)
    if node.style:  # quoted or block scalars are always strings
        if tag in (_STR, "!"):
            return node.value
    elif tag == _STR:
        return _resolve_plain(node.value)
    explicit: dict[str, Callable[[str], Any]] = {
        _TAG + "str": str,
        _TAG + "int": int,
        _TAG + "float": Decimal,
        _TAG + "bool": lambda v: {"true": True, "false": False}[v.lower()],
        _TAG + "null": lambda v: None,
    }
    if tag not in explicit:
        line, column = _position(node)
        raise SourceError(
            codes.UNSUPPORTED_TAG,
            f"tag {tag!r} is not supported; remove it and write a plain value",
            line,
            column,
        )
    try:
        return explicit[tag](node.value)
    except (ValueError, KeyError, ArithmeticError) as error:
        line, column = _position(node)
        raise SourceError(
            codes.YAML_SYNTAX, f"{node.value!r} is not a valid {tag}", line, column
        ) from error


@dataclass
class _Converter:
    budget: int = MAX_NODES_PER_FILE

    def value(self, node: Any) -> Any:
        self.budget -= 1
        if self.budget < 0:
            line, column = _position(node)
            raise SourceError(
                codes.ALIAS_EXPANSION,
                f"anchors and aliases expand to more than {MAX_NODES_PER_FILE} nodes; "
                "write the values out instead of nesting aliases",
                line,
                column,
            )
        kind = node.id
        if kind == "scalar":
            try:
                return _scalar(node)
            except ValueError as error:
                line, column = _position(node)
                raise SourceError(codes.INVALID_VALUE, str(error), line, column) from error
        if kind == "sequence":
            return [self.value(item) for item in node.value]
        return self.mapping(node)

    def mapping(self, node: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _mapping_key(key_node)
            if key in result:
                line, column = _position(key_node)
                raise SourceError(
                    codes.DUPLICATE_KEY,
                    f"duplicate key {key!r}; each key may appear once in a mapping, "
                    "remove or merge the repeated one",
                    line,
                    column,
                )
            result[key] = self.value(value_node)
        return result


def _mapping_key(node: Any) -> str:
    if node.id != "scalar":
        line, column = _position(node)
        raise SourceError(codes.YAML_SYNTAX, "mapping keys must be plain text", line, column)
    key = node.value if node.style else _resolve_plain(node.value)
    if isinstance(key, str):
        return key
    if isinstance(key, int | Decimal) and not isinstance(key, bool):
        return str(key)  # `1:` under `pinned` names slot 1
    line, column = _position(node)
    raise SourceError(
        codes.YAML_SYNTAX, f"mapping key {node.value!r} must be text; quote it", line, column
    )


@dataclass
class SourceFile:
    """One definitions file: its text, its values, and positions on demand."""

    path: str
    text: str
    _root: Any = field(default=None, repr=False)

    def parse(self) -> dict[str, Any]:
        """Return the single top-level mapping, or raise `SourceError`."""
        try:
            root = _compose(self.text)
        except MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = error.problem or error.context or "invalid YAML"
            if "another document" in problem:
                raise SourceError(
                    codes.MULTIPLE_DOCUMENTS,
                    "a definitions file holds one document; move the one after '---' "
                    "into a file of its own",
                    line,
                    column,
                ) from error
            raise SourceError(codes.YAML_SYNTAX, f"YAML syntax: {problem}", line, column) from error
        if root is None:
            raise SourceError(
                codes.EMPTY_FILE,
                "the file is empty; write one object with 'kind' and 'key', or delete it",
            )
        if root.id != "mapping":
            line, column = _position(root)
            raise SourceError(
                codes.NOT_A_MAPPING,
                f"the document is a {root.id}, not a mapping; write one object with "
                "'kind' and 'key' at the top level",
                line,
                column,
            )
        # The node tree is not kept: positions are needed only for the rare file with a
        # diagnostic, and `locate` composes it again then.
        return _Converter().mapping(root)

    def locate(self, path: Sequence[PathElement], *, key: bool = False) -> tuple[int, int]:
        """Line and column of the value at `path` (or of its key), as near as exists.

        Elements that do not name a child (pydantic's union tags, for instance) are
        skipped, so a validation error's location maps onto the text.
        """
        node = self._root
        if node is None:
            try:
                node = self._root = _compose(self.text)
            except MarkedYAMLError:
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
