"""Fuzzing the SDK with what an application or a server might hand it.

(a) Hostile users against the example bundle: mappings that raise, keys and values
    whose `__str__`, `__eq__` or `__hash__` raise, subclasses of str, int and dict,
    NaN and infinities, bytes, lone surrogates, integers too long to write, nesting.
    `evaluate` never raises and gives every flag a `Result`; the batch path agrees with
    the scalar one for ids holding surrogates.
(b) Raw HTTP responses, served by a loopback socket server to a running poller: the
    thread stays alive and a good bundle is always the one served.
(c) Hostile bundles (the example with one field replaced by any JSON value, re-signed so
    that it passes the content id check): loading raises BundleError or nothing, and a
    bundle that loads evaluates any user without raising.

Sizes come from `fuzz_examples` (conftest): small by default, long with
`--hypothesis-profile=long`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from conftest import REPO, fuzz_examples
from hypothesis import given, settings
from hypothesis import strategies as st
from test_poller import GOOD, GOOD_ID, OTHER, OTHER_ID, RawServer, ok, wait_until

from expc.sdk.evaluate import BundleError, Evaluator, Result, content_id_of, parse_bundle
from expc.sdk.poller import BundlePoller

BUNDLE = json.loads((REPO / "generated" / "production" / "bundle.json").read_text(encoding="utf-8"))
EVALUATOR = Evaluator(BUNDLE)
KEYS = EVALUATOR.flag_keys
ATTRIBUTES = ["user_id", "country", "email", "platform", "app_version", "account_age_days"]


# --- (a) hostile users ------------------------------------------------------------


class Hostile:
    """Raises from every method an evaluator might call."""

    def _raise(self, *args: Any) -> Any:
        raise RuntimeError("hostile")

    __str__ = __repr__ = __format__ = __bool__ = __len__ = __iter__ = _raise
    __eq__ = __lt__ = __gt__ = __float__ = __int__ = __index__ = __hash__ = _raise


class HostileStr(str):
    """Text whose methods raise; it hashes as text, so that it can be a key and collide."""

    def _raise(self, *args: Any) -> Any:
        raise RuntimeError("hostile str")

    __str__ = __repr__ = __eq__ = __len__ = encode = isascii = _raise  # type: ignore[assignment]
    __hash__ = str.__hash__


class UnhashableStr(HostileStr):
    __hash__ = HostileStr._raise


class HostileInt(int):
    def _raise(self, *args: Any) -> Any:
        raise RuntimeError("hostile int")

    __str__ = __repr__ = __eq__ = __hash__ = __lt__ = bit_length = __index__ = _raise


class HostileFloat(float):
    def _raise(self, *args: Any) -> Any:
        raise RuntimeError("hostile float")

    __str__ = __repr__ = __eq__ = __hash__ = __sub__ = _raise


class LyingClass:
    """An object whose `__class__` raises, which `isinstance` consults."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("no class")


class ClaimsToBeText:
    """An object that says it is a str."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return str


class CollidingKey:
    """Hashes like an attribute's name, so a lookup of that name compares with it, and
    then raises (once armed: a dict holding it and the name cannot be built otherwise)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.armed = False

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        if self.armed:
            raise RuntimeError("colliding key")
        return other is self

    def __repr__(self) -> str:
        return f"CollidingKey({self.name!r})"


class CollidingText(str):
    """The same as text: equal to the attribute's name it spells, until armed."""

    armed = False

    def __eq__(self, other: object) -> bool:
        if self.armed:
            raise RuntimeError("colliding text")
        return other is self

    __hash__ = str.__hash__


def with_colliding_keys(user: dict[Any, Any]) -> dict[Any, Any]:
    """`user` plus keys that collide with "user_id" and "country" and raise when compared."""
    colliding: list[CollidingKey | CollidingText] = [
        CollidingKey("user_id"),
        CollidingText("country"),
    ]
    hostile: dict[Any, Any] = {colliding[0]: "x", colliding[1]: "NO"}
    hostile.update(user)
    for key in colliding:
        key.armed = True
    return hostile


class RaisingDict(dict[Any, Any]):
    def _raise(self, *args: Any) -> Any:
        raise RuntimeError("hostile dict")

    get = __getitem__ = __contains__ = __iter__ = __len__ = keys = items = _raise


class RaisingMapping(Mapping[str, Any]):
    def __init__(self, failing: str) -> None:
        self.failing = failing

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError(self.failing)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError(self.failing)

    def __len__(self) -> int:
        raise RuntimeError(self.failing)


class ChangingMapping(Mapping[str, Any]):
    """Answers differently every time it is asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __getitem__(self, key: str) -> Any:
        self.calls += 1
        return [f"u-{self.calls}", None, 7, ["x"]][self.calls % 4]

    def __iter__(self) -> Iterator[str]:
        return iter(ATTRIBUTES)

    def __len__(self) -> int:
        return len(ATTRIBUTES)


surrogate = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.text(st.characters() | surrogate, max_size=20) | st.sampled_from(
    ["qa-anna", "NO", "dev@shopwell.example", "ios", "3.2.0", "\ud83d\ude00", "\ud800"]
)


def _power(spec: tuple[int, int, int, int]) -> int:
    sign, base, exponent, offset = spec
    return sign * int(base**exponent) + offset


# Built, not listed: hypothesis describes its strategies with repr(), and these integers
# have no repr under Python's default digit limit (which is the point of them).
huge_integers = st.sampled_from(
    [
        *((1, 10, 5000, 0), (-1, 10, 5000, 0), (1, 10, 4300, 0), (1, 10, 4300, -1)),
        *((1, 2, 14285, 0), (1, 2, 2101, 0), (-1, 2, 70, 0)),
    ]
).map(_power)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_integers,
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    texts,
    st.binary(max_size=8),
    texts.map(HostileStr),
    texts.map(UnhashableStr),
    st.integers().map(HostileInt),
    st.floats(allow_nan=True).map(HostileFloat),
    st.builds(Hostile),
    st.builds(LyingClass),
    st.builds(ClaimsToBeText),
    st.just(Decimal("sNaN")),
)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
        | st.tuples(children)
    ),
    max_leaves=6,
)
keys = st.sampled_from(ATTRIBUTES) | texts | huge_integers | st.integers()
plain_users = st.dictionaries(keys, values, max_size=6)
users = st.one_of(
    plain_users,
    plain_users.map(with_colliding_keys),
    st.builds(RaisingDict),
    st.sampled_from(["get", "getitem"]).map(RaisingMapping),
    st.builds(ChangingMapping),
    values,
)


@settings(max_examples=fuzz_examples(1000))
@given(users)
def test_evaluate_never_raises_and_answers_every_flag_for_hostile_users(user: Any) -> None:
    results = EVALUATOR.evaluate(user)
    assert list(results) == KEYS
    assert all(type(result) is Result for result in results.values())
    explained, steps = EVALUATOR.explain(user)
    assert list(explained) == KEYS and steps
    for key in KEYS[::4]:
        assert type(EVALUATOR.evaluate(user, key)) is Result


ids = st.text(st.characters() | surrogate, max_size=12) | st.sampled_from(
    ["qa-anna", "", "\ud800", "\udc00x", "\ud83d\ude00", "\U0001f600", "\ude00\ud83d"]
)


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="needs expc[batch]")
@settings(max_examples=fuzz_examples(150))
@given(st.lists(ids, min_size=1, max_size=30))
def test_batch_agrees_with_scalar_for_ids_with_surrogates(user_ids: list[str]) -> None:
    from expc.sdk.batch import assign

    assignment = assign(EVALUATOR, user_ids)
    for row, user_id in enumerate(user_ids):
        scalar = EVALUATOR.evaluate({"user_id": user_id})
        for key in KEYS:
            assert assignment.tables[key][assignment.codes[key][row]] is scalar[key]


# --- (b) raw HTTP responses to a running poller -------------------------------------

CHUNKED_GOOD = b"%x\r\n%s\r\n0\r\n\r\n" % (len(GOOD), GOOD)
line_ends = st.sampled_from([b"\r\n", b"\n", b"\r", b""])
status_lines = st.sampled_from(
    [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.0 200 OK",
        b"HTTP/1.1 304 Not Modified",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
        b"HTTP/1.1 302 Found\r\nLocation: /bundle.json",
        b"HTTP/1.1 500 \x1b[31mboom\x07",
        b"HTTP/1.1 999 ?",
        b"HTTP/9.9 200 OK",
        b"ICY 200 OK",
        b"",
    ]
) | st.binary(max_size=40)
header_names = st.sampled_from(
    [b"Content-Length", b"Transfer-Encoding", b"ETag", b"Content-Encoding", b"X-Any"]
) | st.binary(max_size=12).filter(lambda name: b"location" not in name.lower())
header_values = st.sampled_from(
    [
        b"chunked",
        b"gzip",
        b"0",
        b"-1",
        b"99999999999999999999999",
        str(len(GOOD)).encode(),
        str(len(GOOD) + 10).encode(),
        b'"v1"',
        b"\x1b]0;title\x07",
    ]
) | st.binary(max_size=30)
headers = st.lists(
    st.tuples(header_names, header_values).map(lambda pair: pair[0] + b": " + pair[1]),
    max_size=6,
)
bodies = st.sampled_from(
    [GOOD, OTHER, GOOD[:100], GOOD + b"x", CHUNKED_GOOD, CHUNKED_GOOD[:50], b"", b"{}", b"null"]
) | st.binary(max_size=200)
structured = st.builds(
    lambda status, end, lines, body: status + end + b"".join(h + end for h in lines) + end + body,
    status_lines,
    line_ends,
    headers,
    bodies,
)
responses = structured | st.binary(max_size=300)


@pytest.fixture(scope="module")
def polled() -> Iterator[tuple[RawServer, BundlePoller]]:
    server = RawServer(ok(GOOD))
    poller = BundlePoller(server.url, interval=0.002, max_interval=0.01, timeout=2)
    poller.start()
    wait_until(lambda: poller.state.content_id == GOOD_ID, "the first bundle")
    yield server, poller
    poller.stop()
    server.close()


@settings(max_examples=fuzz_examples(400))
@given(responses)
def test_poller_thread_survives_any_response_and_serves_a_good_bundle(
    polled: tuple[RawServer, BundlePoller], response: bytes
) -> None:
    server, poller = polled
    server.answer = response
    polls = poller.state.polls
    # Two more polls: the one under way may have had the previous answer.
    wait_until(lambda: poller.state.polls >= polls + 2, "two polls")
    state = poller.state
    assert state.running
    assert state.content_id in (GOOD_ID, OTHER_ID)
    assert state.last_error is None or state.last_error.isprintable()
    assert poller.evaluator is not None
    assert list(poller.evaluator.evaluate({"user_id": "u-1"})) == poller.evaluator.flag_keys


# --- (c) hostile bundles -----------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(st.characters() | surrogate, max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document, the document itself excluded."""
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in children:
        yield (*path, key)
        if isinstance(child, dict | list):
            yield from _paths(child, (*path, key))


PATHS = [path for path in _paths(BUNDLE["flags"]) if path]


def _replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(BUNDLE)
    place = document["flags"]
    for step in path[:-1]:
        place = place[step]
    place[path[-1]] = value
    return document


@settings(max_examples=fuzz_examples(800))
@given(st.sampled_from(PATHS), json_values, values)
def test_a_hostile_bundle_raises_bundle_error_or_evaluates_without_raising(
    path: tuple[Any, ...], value: Any, user: Any
) -> None:
    document = _replaced(path, value)
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate: refused below
        document["release"] = {"content_id": content_id_of(document)}
    text = json.dumps(document)  # \u escapes, so surrogates reach the parser
    with contextlib.suppress(BundleError):  # refusing is fine; anything else is not
        parse_bundle(text)
    evaluator = Evaluator(BUNDLE)
    try:
        evaluator.swap(text)
    except BundleError:
        assert evaluator.content_id == GOOD_ID  # the good bundle still serves
        return
    results = evaluator.evaluate(user)
    assert list(results) == evaluator.flag_keys
    assert all(type(result) is Result for result in results.values())
