"""Private attributes (DESIGN §12; docs/bundle.md, "Private attributes"). Standard library.

A bundle that declares `private` holds no value of those attributes: every value the
compiler would compare with one (a condition, an override, a pin, a cohort's ids, a
holdout's include and exclude lists) is written as a digest, compared under the
attribute `<name>#sha256`:

    digest = "sha256:" + hex(sha256(utf8(salt + "\\x00" + name + "\\x00" + text)))

where `text` is the attribute's text as every condition reads it (`as_text`: well-formed
text, `true`/`false`, integers in decimal) and `utf8` is the hash's UTF-8 (a lone
surrogate is U+FFFD). The evaluator adds `<name>#sha256` to the user, once per
evaluation, for every private attribute the bundle compares; everything else about
evaluating is unchanged, and bucketing still hashes the raw value with murmur3.

This hides values from a casual reader of a public bundle, not from someone who can
guess them: a guessed value is checked with one hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from expc.sdk.bucketing import utf8
from expc.sdk.bundle import BundleError, kind_of, shown
from expc.sdk.conditions import as_text, well_formed

DIGEST_SUFFIX = "#sha256"
DIGEST_PREFIX = "sha256:"
_sha256 = hashlib.sha256


def digest_attribute(attribute: str) -> str:
    """The attribute a private attribute's digests are compared under."""
    return attribute + DIGEST_SUFFIX


def digest(salt: str, attribute: str, text: str) -> str:
    """The digest of one value of a private attribute (its text, as `as_text` gives it)."""
    return DIGEST_PREFIX + hashlib.sha256(utf8(f"{salt}\0{attribute}\0{text}")).hexdigest()


class _Unreadable:
    """An attribute whose reading raised: reading its digest raises too, so that a
    condition on it fails exactly as the condition on the raw value would have."""


_UNREADABLE = _Unreadable()


class _WithDigests(Mapping[str, Any]):
    """A user mapping (not a plain dict) seen with its digests: the digest attributes
    answer from here, everything else from the user's own mapping, called exactly as
    the evaluator would call it, so a mapping that misbehaves misbehaves alike."""

    __slots__ = ("_digests", "_user")

    def __init__(self, user: Mapping[str, Any], digests: dict[str, Any]) -> None:
        self._user = user
        self._digests = digests

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._digests:
            value = self._digests[key]
            if value is _UNREADABLE:
                raise LookupError(f"{key} could not be read")
            return value
        return self._user.get(key) if default is None else self._user.get(key, default)

    def __getitem__(self, key: str) -> Any:
        if key in self._digests:
            return self.get(key)
        return self._user[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._user)

    def __len__(self) -> int:
        return len(self._user)


class Private:
    """A bundle's `private` block, prepared: the salt and, for each private attribute
    that some condition compares, its digest attribute and hash prefix."""

    __slots__ = ("_plan", "attributes", "salt")

    def __init__(self, salt: str, attributes: tuple[str, ...], compared: frozenset[str]) -> None:
        self.salt = salt
        self.attributes = attributes
        # (attribute, its digest attribute, the UTF-8 hashed before the value)
        self._plan = [
            (name, digest_attribute(name), utf8(f"{salt}\0{name}\0"))
            for name in attributes
            if digest_attribute(name) in compared
        ]

    def digest(self, attribute: str, text: str) -> str:
        return digest(self.salt, attribute, text)

    def with_digests(self, user: Any) -> Any:
        """`user` with `<name>#sha256` set from its own `<name>` (None when that has no
        text; a digest the user sent itself is replaced). Never raises: a plain dict is
        copied with the digests added, any other mapping is wrapped, anything else has
        no attributes and is returned as it is."""
        if not self._plan:
            return user
        if type(user) is dict:
            try:
                return self._dict_with_digests(user)
            except Exception:  # a key whose comparison raises: read it the slow way
                pass
        try:
            if not isinstance(user, Mapping):
                return user
        except Exception:  # an object whose __class__ raises: no attributes
            return user
        digests: dict[str, Any] = {}
        for attribute, name, prefix in self._plan:
            try:
                text = as_text(user.get(attribute))
                digests[name] = None if text is None else _hex(prefix, text)
            except Exception:
                digests[name] = _UNREADABLE
        return _WithDigests(user, digests)

    def _dict_with_digests(self, user: dict[str, Any]) -> dict[str, Any]:
        # The common case, inlined: a dict of ASCII text (a third of the time is calls).
        copied: dict[str, Any] | None = None
        for attribute, name, prefix in self._plan:
            raw = user.get(attribute)
            if raw is None:
                if name not in user:
                    continue
                hashed = None
            else:
                text = raw if type(raw) is str and raw.isascii() else as_text(raw)
                hashed = None if text is None else _hex(prefix, text)
            if copied is None:
                copied = user.copy()
            copied[name] = hashed
        return user if copied is None else copied


def _hex(prefix: bytes, text: str) -> str:
    # `text` is well-formed (`as_text`), so it has UTF-8 and it is the spec's.
    return DIGEST_PREFIX + _sha256(prefix + text.encode()).hexdigest()


def private_of(bundle: Mapping[str, Any], compared: frozenset[str]) -> Private | None:
    """The bundle's `private` block (None when it has none), checked: a salt and a list
    of distinct attribute names, all text. `compared` is every attribute the bundle's
    conditions read: a private attribute no condition compares costs nothing."""
    block = bundle.get("private")
    if block is None:
        return None
    if type(block) is not dict:
        raise BundleError(f"private must be an object, not {kind_of(block)}")
    salt = block.get("salt")
    names = block.get("attributes")
    if type(salt) is not str or well_formed(salt) is not salt:
        raise BundleError("private: salt must be text")
    if type(names) is not list or not all(type(name) is str for name in names):
        raise BundleError("private: attributes must be a list of text")
    if len(set(names)) != len(names):
        raise BundleError("private: an attribute is listed twice")
    for name in names:
        if well_formed(name) is not name or DIGEST_SUFFIX in name:
            raise BundleError(f"private: {shown(name)} is not an attribute name")
    return Private(salt, tuple(names), compared)
