"""Reading and verifying a bundle (docs/bundle.md). Standard library only.

`parse_bundle` reads a bundle from any source and checks its schema version and content
id; the field readers below are what `expc.sdk.program` uses to refuse a flag of the
wrong shape. Everything here raises `BundleError` and nothing else, whatever the input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expc.sdk.bucketing import POINTS

# The highest major schema version this evaluator reads; it reads every one from 1 up.
# 2.0 is 1.0 plus `private` (docs/bundle.md): an SDK that cannot hash private attributes
# must refuse such a bundle, not evaluate its digests as missing attributes.
SUPPORTED_MAJOR = 2
# Conditions nest at most this deep (docs/bundle.md): evaluating them recurses.
MAX_DEPTH = 100
TEXT_OPERATORS = frozenset(
    ["is", "is_not", "in", "not_in", "contains", "starts_with", "ends_with", "matches"]
)
ORDERED_OPERATORS = frozenset(
    ["lt", "lte", "gt", "gte", "version_lt", "version_lte", "version_gt", "version_gte"]
)
OPERATORS = TEXT_OPERATORS | ORDERED_OPERATORS | {"exists", "not_exists"}
GROUPS = ("all", "any", "none")

BundleSource = Mapping[str, Any] | bytes | bytearray | str | Path


class BundleError(ValueError):
    """A bundle that cannot be used: unreadable, of an unknown schema, or altered."""


# --- a bundle's fields: anything of the wrong shape is a BundleError ----------------


def kind_of(value: Any) -> str:
    """What a JSON value is, for an error message."""
    kinds = {dict: "an object", list: "a list", str: "text", bool: "true/false"}
    if value is None:
        return "null"
    if type(value) in (int, float):
        return "a number"
    return kinds.get(type(value), type(value).__name__)


def shown(value: Any, limit: int = 80) -> str:
    """A value for an error message: short, printable, and safe whatever it is."""
    try:
        if type(value) is str:
            text = value
        elif value is None or type(value) in (bool, int, float):
            text = json.dumps(value)
        else:
            return kind_of(value)
    except Exception:  # an integer too long to write
        return kind_of(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def describe(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = ""
    return f"{type(error).__name__}: {shown(text, 300)}" if text else type(error).__name__


def field(document: Any, name: str, where: str) -> Any:
    if type(document) is not dict:
        raise BundleError(f"{where} must be an object, not {kind_of(document)}")
    if name not in document:
        raise BundleError(f"{where} lacks {name!r}")
    return document[name]


def text(document: Any, name: str, where: str) -> str:
    value = field(document, name, where)
    if type(value) is not str:
        raise BundleError(f"{where}: {name} must be text, not {kind_of(value)}")
    return value


def boolean(document: Any, name: str, where: str) -> bool:
    value = field(document, name, where)
    if type(value) is not bool:
        raise BundleError(f"{where}: {name} must be true or false, not {kind_of(value)}")
    return value


def integer(document: Any, name: str, where: str, highest: int) -> int:
    value = field(document, name, where)
    if type(value) is not int or not 0 <= value <= highest:
        raise BundleError(f"{where}: {name} must be an integer 0..{highest}, not {shown(value)}")
    return value


def array(document: Any, name: str, where: str) -> list[Any]:
    value = field(document, name, where)
    if type(value) is not list:
        raise BundleError(f"{where}: {name} must be a list, not {kind_of(value)}")
    return value


def texts(document: Any, name: str, where: str) -> list[str]:
    values = array(document, name, where)
    if not all(type(value) is str for value in values):
        raise BundleError(f"{where}: every one of {name} must be text")
    return values


def point_range(variant: Any, where: str) -> tuple[int, int]:
    bounds = field(variant, "range", where)
    if (
        type(bounds) is not list
        or len(bounds) != 2
        or type(bounds[0]) is not int
        or type(bounds[1]) is not int
        or not 0 <= bounds[0] <= bounds[1] <= POINTS
    ):
        raise BundleError(f"{where}: range must be two integers 0 <= start <= end <= {POINTS}")
    return bounds[0], bounds[1]


def check_condition(condition: Any, where: str, depth: int = 1) -> None:
    """Refuse a condition `compile_condition` would not understand, or one nested so
    deep that evaluating it could exhaust the stack."""
    if depth > MAX_DEPTH:
        raise BundleError(f"{where}: conditions nest deeper than {MAX_DEPTH} levels")
    if type(condition) is not dict:
        raise BundleError(f"{where}: a condition must be an object, not {kind_of(condition)}")
    for group in GROUPS:
        if group in condition:
            for child in array(condition, group, where):
                check_condition(child, where, depth + 1)
            return
    text(condition, "attribute", where)
    op = text(condition, "op", where)
    if op not in OPERATORS:
        raise BundleError(f"{where}: unknown operator {shown(op)}")
    values = texts(condition, "values", where)
    if op in ORDERED_OPERATORS and not values:
        raise BundleError(f"{where}: {op} needs a value to compare with")


def release_environment(release: Any) -> str | None:
    """`release.environment`: the environment the bundle was compiled for, absent when
    the project declares none (DESIGN §10)."""
    if type(release) is not dict or "environment" not in release:
        return None
    environment = release["environment"]
    if environment is None:
        return None
    if type(environment) is not str:
        raise BundleError(f"release: environment must be text, not {kind_of(environment)}")
    return environment


# --- the content id ------------------------------------------------------------------

# One encoder for every call: `json.dumps` with options builds a new one each time,
# which cost a tenth of writing a bundle of 100,000 flags.
_COMPACT = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    """Canonical compact JSON: keys sorted, no spaces, non-ASCII as UTF-8."""
    return _COMPACT.encode(value)


def content_id(schema_version: str, flag_texts: Sequence[str], private: Any = None) -> str:
    """The content id (docs/bundle.md): sha256 of the compact canonical JSON of
    `{"flags": [...], "private": ..., "schema_version": ...}` (`private` only when the
    bundle has it), from each flag's compact JSON text. The compiler passes the texts it
    writes into the bundle, so nothing is encoded twice."""
    hidden = "" if private is None else f',"private":{compact_json(private)}'
    version = compact_json(schema_version)
    body = f'{{"flags":[{",".join(flag_texts)}]{hidden},"schema_version":{version}}}'
    return "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()


def content_id_of(bundle: Mapping[str, Any]) -> str:
    """Recompute a bundle's content id (see docs/bundle.md)."""
    flag_texts = [compact_json(f) for f in bundle["flags"]]
    return content_id(bundle["schema_version"], flag_texts, bundle.get("private"))


# --- reading and verifying -----------------------------------------------------------


def _read(source: BundleSource) -> Any:
    if isinstance(source, Path):
        source = source.read_bytes()
    if isinstance(source, bytes | bytearray | str):
        return json.loads(source)
    if isinstance(source, Mapping):
        # Through JSON, so that what is checked and kept is plain data whatever the
        # mapping's classes do (a dict subclass, a mapping that answers differently twice).
        return json.loads(json.dumps(dict(source)))
    raise BundleError(
        f"a bundle is JSON bytes or text, a path or a mapping, not {type(source).__name__}"
    )


def parse_bundle(source: BundleSource) -> dict[str, Any]:
    """Read and verify a bundle given as a dict, JSON bytes or text, or a path.

    Raises `BundleError`, and nothing else, whatever the source holds."""
    try:
        document = _read(source)
    except BundleError:
        raise
    except Exception as error:  # OSError, JSON errors, RecursionError on deep nesting, ...
        raise BundleError(f"cannot read the bundle: {describe(error)}") from error
    if type(document) is not dict:
        raise BundleError("a bundle is a JSON object")
    version = document.get("schema_version")
    majors = [str(major) for major in range(1, SUPPORTED_MAJOR + 1)]
    if type(version) is not str or version.split(".", 1)[0] not in majors:
        named = "(none)" if version is None else shown(version)
        raise BundleError(
            f"bundle schema version {named} is not supported; this evaluator "
            f"reads {' and '.join(m + '.x' for m in majors)}: upgrade expc"
        )
    release = document.get("release")
    expected = release.get("content_id") if type(release) is dict else None
    if type(expected) is not str:
        raise BundleError("the bundle lacks its release.content_id")
    if "flags" not in document:
        raise BundleError("the bundle lacks 'flags'")
    try:
        actual = content_id_of(document)
    except UnicodeEncodeError as error:
        raise BundleError(
            "the bundle holds text that is not Unicode (a lone surrogate such as \\ud800), "
            "which has no content id"
        ) from error
    except Exception as error:
        raise BundleError(f"cannot compute the content id: {describe(error)}") from error
    if actual != expected:
        raise BundleError(
            f"content id mismatch: the bundle says {shown(expected)}, its content hashes "
            f"to {actual}; it was altered or truncated"
        )
    return document
