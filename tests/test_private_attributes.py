"""Private attributes (DESIGN §12): no value of one reaches any file `expc compile`
writes, and hiding them changes no user's variant or reason.

The fixture `tests/cases/private/definitions` puts a value of a private attribute in
every place one can stand (overrides, pins, cohort ids and conditions, holdout include
and exclude, per environment), with values chosen to catch a leak: some look like
digests, some are unicode, one holds U+FFFD (what a lone surrogate in a user's value
becomes), one is a thousand characters long, some are numbers and booleans.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bundle_strategies import ATTRIBUTES, bundles, users
from conftest import CASES, REPO, valid_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from expc import cli
from expc.outputs.bundle_types import PRIVATE_SCHEMA_VERSION, Bundle
from expc.outputs.private import EQUALITY_OPERATORS, VALUELESS_OPERATORS, Hiding, hide
from expc.outputs.release import bundle_of
from expc.reading.model import (
    AllOf,
    AnyOf,
    Audience,
    Cohort,
    Condition,
    Experiment,
    Holdout,
    Mutex,
)
from expc.sdk.batch import assign
from expc.sdk.evaluate import Evaluator, content_id_of
from expc.sdk.private import digest

FIXTURE = CASES / "private" / "definitions"
EXAMPLE = REPO / "definitions"
# Values this short are looked for as whole strings only where a private value would
# stand; longer ones anywhere, inside any string and in every file.
SUBSTRING_FROM = 6


# --- what the definitions hold --------------------------------------------------------


def _text(value: Any) -> str:
    """A condition value as the compiler writes it (`outputs.bundle._text`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _conditions(node: AllOf | AnyOf | Condition | None) -> Iterator[Condition]:
    if isinstance(node, AllOf):
        for child in node.all:
            yield from _conditions(child)
    elif isinstance(node, AnyOf):
        for child in node.any:
            yield from _conditions(child)
    elif node is not None:
        yield node


def private_values(definitions: Path) -> set[str]:
    """Every value of a private attribute the definitions write, in every environment:
    ids of objects bucketed by one, cohort ids, values of conditions on one."""
    snapshot = valid_snapshot(definitions)
    assert snapshot.project is not None
    private = set(snapshot.project.private_attributes)
    assert private, "the definitions declare no private attribute"
    values: set[str] = set()
    for environment in snapshot.environments:
        for loaded in environment.objects.values():
            definition = loaded.definition
            audiences: list[Audience] = []
            if isinstance(definition, Experiment | Mutex | Holdout):
                by = definition.bucketing.by or snapshot.default_by
                if isinstance(definition, Experiment):
                    audiences = list(definition.overrides.values())
                elif isinstance(definition, Mutex):
                    audiences = list(definition.pinned.values())
                else:
                    audiences = [definition.include, definition.exclude]
                if by in private:
                    values.update(user for audience in audiences for user in audience.users)
            if isinstance(definition, Cohort):
                assert snapshot.default_by in private  # cohort ids compare with user_id
                values.update(definition.users)
            match = definition.match if isinstance(definition, Cohort) else None
            targeting = definition.targeting if isinstance(definition, Experiment) else None
            for condition in [*_conditions(match), *_conditions(targeting)]:
                if condition.attribute in private:
                    values.update(_text(v) for v in condition.values)
    return values


# --- what compile writes --------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _where_private_values_stand(document: Any, private: set[str]) -> Iterator[str]:
    """Every string of a bundle, target or vectors file that sits where a value of a
    private attribute would: values of conditions on one (or on its digests), override
    keys, vector users' values of one."""
    if isinstance(document, dict):
        attribute = str(document.get("attribute", "")).removesuffix("#sha256")
        if attribute in private and isinstance(document.get("values"), list):
            yield from (v for v in document["values"] if isinstance(v, str))
        if "users" in document and isinstance(document["users"], dict):
            yield from document["users"]
        if "user" in document and isinstance(document["user"], dict):
            for attribute in private:
                found = document["user"].get(attribute)
                if isinstance(found, str):
                    yield found
        for item in document.values():
            yield from _where_private_values_stand(item, private)
    elif isinstance(document, list):
        for item in document:
            yield from _where_private_values_stand(item, private)


def assert_no_private_value(out: Path, values: set[str], private: set[str]) -> int:
    """No value of `values` in any file below `out`; returns how many files were read."""
    long_values = [v for v in values if len(v) >= SUBSTRING_FROM]
    files = sorted(p for p in out.rglob("*") if p.is_file())
    for path in files:
        text = path.read_text(encoding="utf-8")
        for value in long_values:
            assert value not in text, (path, value)
        if path.suffix != ".json":
            continue
        document = json.loads(text)
        for string in _strings(document):
            for value in long_values:
                assert value not in string, (path, value)
        standing = set(_where_private_values_stand(document, private))
        assert not standing & values, (path, sorted(standing & values))
    return len(files)


def _compile(definitions: Path, out: Path, *targets: str) -> int:
    arguments = ["compile", str(definitions), "--out", str(out)]
    for target in targets:
        arguments += ["--target", target]
    return cli.main(arguments)


def test_no_private_value_in_any_file_compile_writes_for_the_example(tmp_path: Path) -> None:
    values = private_values(EXAMPLE)
    # The QA team's ids, the support staff's ids (production only), the QA lead's email.
    assert {"qa-anna", "qa-bjorn", "support-lena", "qa-lead@shopwell.example"} <= values
    assert _compile(EXAMPLE, tmp_path / "out") == 0
    read = assert_no_private_value(tmp_path / "out", values, {"user_id", "email"})
    assert (tmp_path / "out" / "staging" / "bundle.json").exists()
    assert read >= 14  # two environments' bundles and vectors, ledger, CODEOWNERS, schemas
    # The committed outputs are these very files (test_example_definitions), checked too.
    assert_no_private_value(REPO / "generated", values, {"user_id", "email"})


def test_no_hostile_private_value_in_any_file_compile_writes(tmp_path: Path) -> None:
    values = private_values(FIXTURE)
    assert {"", "4242", "true", "12345", "7.50"} <= values  # numbers and booleans as text
    assert any(len(v) > 900 for v in values)
    assert any(v.startswith("sha256:") for v in values)
    assert any("\ufffd" in v for v in values) and any(not v.isascii() for v in values)
    assert "staging-only-tester" in values and "production-pin-yuri" in values
    assert _compile(FIXTURE, tmp_path / "out") == 0
    assert_no_private_value(tmp_path / "out", values, {"user_id", "email"})
    for environment in ("staging", "production"):
        bundle = json.loads((tmp_path / "out" / environment / "bundle.json").read_bytes())
        assert bundle["schema_version"] == PRIVATE_SCHEMA_VERSION
        assert bundle["private"]["attributes"] == ["email", "user_id"]
        # The account ids of `accounts` are not private: they stay as written.
        accounts = next(f for f in bundle["flags"] if f["key"] == "accounts")
        assert accounts["overrides"]["users"] == {"acct-public-1": "treatment"}


def test_amplitude_refuses_private_attributes_at_the_place_that_uses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _compile(FIXTURE, tmp_path / "out", "amplitude") == cli.EXIT_FINDINGS
    assert not (tmp_path / "out").exists()  # nothing written
    error = capsys.readouterr().err
    # file:line:col of the targeting that compares `email` (the first flag exported)
    assert re.search(r"experiments/accounts\.yaml:12:3: target amplitude \(staging\)", error)
    assert "compare private attribute 'email'" in error
    assert not any(v in error for v in private_values(FIXTURE) if len(v) >= 4)
    assert _compile(EXAMPLE, tmp_path / "example", "amplitude") == cli.EXIT_FINDINGS


# --- hiding changes nobody's result ---------------------------------------------------


def _without_private_attributes(definitions: Path, into: Path) -> Path:
    shutil.copytree(definitions, into)
    project = into / "project.yaml"
    lines = project.read_text(encoding="utf-8").splitlines(keepends=True)
    project.write_text("".join(x for x in lines if not x.startswith("private_attributes:")))
    return into


def _people(values: set[str], count: int) -> list[Any]:
    """Every private value as an id and as an email, odd values, and random users."""
    rng = random.Random(13)
    texts = sorted(values)
    odd: list[Any] = [
        None,
        "",
        True,
        12345,
        4242,
        7.5,
        ["qa-anna"],
        "override-\ud800-replacement",  # a lone surrogate: the same user as U+FFFD
        "\ud83d\ude00",
        "sha256:" + "0" * 64,
    ]
    people: list[Any] = [None, "not a mapping", {}]
    for value in [*texts, *odd]:
        people.append({"user_id": value})
        people.append({"user_id": f"u-{len(people)}", "email": value})
        people.append({"user_id": value, "email": value, "is_employee": True})
    for index in range(count):
        person: dict[str, Any] = {"user_id": rng.choice([*texts, *odd, f"user-{index}"])}
        if rng.random() < 0.7:
            person["email"] = rng.choice([*texts, *odd, f"person-{index}@mail.example"])
        if rng.random() < 0.3:
            person["is_employee"] = rng.choice([True, False, "true"])
        if rng.random() < 0.5:
            person["country"] = rng.choice(["NO", "SE", "DE"])
        if rng.random() < 0.3:
            person["account_id"] = rng.choice(["acct-public-1", f"acct-{index}"])
        if rng.random() < 0.05:
            person["email#sha256"] = digest("x", "email", "forged")  # replaced, not read
        people.append(person)
    return people


def _outcomes(evaluator: Evaluator, user: Any) -> dict[str, tuple[str | None, str]]:
    return {key: (r.variant, r.reason) for key, r in evaluator.evaluate(user).items()}


@pytest.mark.parametrize("definitions", [FIXTURE, EXAMPLE], ids=["hostile", "example"])
def test_hiding_changes_no_variant_and_no_reason(definitions: Path, tmp_path: Path) -> None:
    plain_definitions = _without_private_attributes(definitions, tmp_path / "plain")
    hidden_snapshot = valid_snapshot(definitions)
    plain_snapshot = valid_snapshot(plain_definitions)
    people = _people(private_values(definitions), 3000)
    reasons: set[str] = set()
    for environment in hidden_snapshot.names:
        hidden_bundle = bundle_of(hidden_snapshot, environment)
        assert "private" in hidden_bundle and "private" not in bundle_of(
            plain_snapshot, environment
        )
        hidden = Evaluator(dict(hidden_bundle))  # verified like a downloaded bundle
        plain = Evaluator(dict(bundle_of(plain_snapshot, environment)))
        for user in people:
            expected = _outcomes(plain, user)
            assert _outcomes(hidden, user) == expected, (environment, user)
            for key, outcome in expected.items():
                one = hidden.evaluate(user, key)
                assert (one.variant, one.reason) == outcome, (environment, user, key)
            explained, _steps = hidden.explain(user)
            assert {k: (r.variant, r.reason) for k, r in explained.items()} == expected
            reasons.update(reason for _variant, reason in expected.values())
        ids = [
            p["user_id"] for p in people if isinstance(p, dict) and type(p.get("user_id")) is str
        ]
        _assert_batch_agrees(hidden, plain, ids)
    # The comparison reaches every way a private value decides something.
    assert {"override", "targeting", "bucketed"} <= reasons
    assert any(r.startswith("holdout:") for r in reasons)
    assert any(r.startswith("mutex:") for r in reasons)


def _assert_batch_agrees(hidden: Evaluator, plain: Evaluator, ids: list[str]) -> None:
    hidden_batch, plain_batch = assign(hidden, ids), assign(plain, ids)
    bys = {flag.by for flag in hidden.prepared_flags}
    for key in hidden_batch.keys:
        got = [(r.variant, r.reason) for r in hidden_batch.results(key)]
        assert got == [(r.variant, r.reason) for r in plain_batch.results(key)], key
        scalar = [hidden.evaluate(dict.fromkeys(bys, i), key) for i in ids]
        assert hidden_batch.results(key) == scalar, key


def test_a_lone_surrogate_is_the_same_user_as_its_replacement_character() -> None:
    evaluator = Evaluator(dict(bundle_of(valid_snapshot(FIXTURE), "production")))
    lone = evaluator.evaluate({"user_id": "override-\ud800-replacement"}, "checkout")
    assert (lone.variant, lone.reason) == ("fast", "override")


def test_evaluation_never_raises_on_hostile_users_of_a_private_bundle() -> None:
    evaluator = Evaluator(dict(bundle_of(valid_snapshot(FIXTURE), "production")))

    class Raising(dict[str, Any]):
        def get(self, key: Any, default: Any = None) -> Any:
            raise RuntimeError("no")

    class Keyed:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

        def __hash__(self) -> int:
            return hash("email")

    for user in [Raising(email="x"), {Keyed(): 1, "user_id": "u"}, {"email": float("nan")}]:
        results = evaluator.evaluate(user)
        assert len(results) == len(evaluator.flag_keys)


# --- random bundles: hiding is invisible on every evaluation path ----------------------


def _answerable(bundle: dict[str, Any], private: frozenset[str]) -> frozenset[str]:
    """The attributes of `private` that conditions compare only by equality (or not at
    all): E210 refuses the others in definitions, so the compiler never hides them."""

    def others(node: Any) -> set[str]:
        for group in ("all", "any", "none"):
            if group in node:
                return set().union(*(others(child) for child in node[group]))
        answerable = node["op"] in EQUALITY_OPERATORS | VALUELESS_OPERATORS
        return set() if answerable else {node["attribute"]}

    compared = set()
    for flag in bundle["flags"]:
        for entry in flag["overrides"]["cohorts"]:
            compared |= others(entry["when"])
        if flag["targeting"] is not None:
            compared |= others(flag["targeting"])
    return private - compared


def _without_the_empty_id(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle without overrides of the empty id, which the compiler never writes
    (ids have at least one character), signed again."""
    flags = []
    for flag in bundle["flags"]:
        users = {u: v for u, v in flag["overrides"]["users"].items() if u}
        flags.append({**flag, "overrides": {**flag["overrides"], "users": users}})
    cleaned = {**bundle, "flags": flags}
    return {**cleaned, "release": {**bundle["release"], "content_id": content_id_of(cleaned)}}


def _hidden(bundle: dict[str, Any], hiding: Hiding) -> dict[str, Any]:
    flags = [hide(flag, hiding) for flag in bundle["flags"]]
    hidden: dict[str, Any] = {
        "schema_version": PRIVATE_SCHEMA_VERSION,
        "flags": flags,
        "private": hiding.block(),
    }
    release = {**bundle["release"], "content_id": content_id_of(hidden)}
    return {**hidden, "release": release}


@settings(max_examples=200, deadline=None)
@given(
    bundles(),
    st.frozensets(st.sampled_from(ATTRIBUTES), min_size=1),
    st.lists(users, min_size=1, max_size=6),
    st.lists(st.sampled_from(["qa-1", "u-2", "", "\u00e9l\u00e8ve", "\ud800"]), max_size=8),
)
def test_hidden_random_bundles_evaluate_like_plain_ones_on_every_path(
    bundle: dict[str, Any], private: frozenset[str], people: list[Any], ids: list[str]
) -> None:
    bundle = _without_the_empty_id(bundle)
    hiding = Hiding("salt \U0001f600", _answerable(bundle, private) or frozenset({"unread"}))
    hidden = Evaluator(_hidden(bundle, hiding))
    plain = Evaluator(bundle)
    for user in [*people, None, "not a mapping"]:
        fast = hidden.evaluate(user)  # the specialised function
        reference, _steps = hidden.explain(user)  # the reference loop
        expected = plain.evaluate(user)
        assert list(fast) == list(expected)
        for key in fast:
            assert fast[key] is reference[key]
            assert (fast[key].variant, fast[key].reason) == (
                expected[key].variant,
                expected[key].reason,
            ), (key, user)
            assert hidden.evaluate(user, key) is fast[key]  # one flag alone
    if ids:
        bys = {flag.by for flag in hidden.prepared_flags}
        assignment = assign(hidden, ids)
        for row, value in enumerate(ids):
            scalar = hidden.evaluate(dict.fromkeys(bys, value))
            for key in assignment.keys:
                assert assignment.tables[key][assignment.codes[key][row]] is scalar[key]


def test_the_example_still_overrides_and_exempts_the_qa_team() -> None:
    """The QA team's ids are gone from the bundle, and QA still gets its overrides."""
    bundle: Bundle = bundle_of(valid_snapshot(EXAMPLE), "production")
    assert "qa-anna" not in json.dumps(bundle, ensure_ascii=False)
    evaluator = Evaluator(dict(bundle))
    results = evaluator.evaluate({"user_id": "qa-anna"})
    assert results["checkout-one-page"].reason == "override"
    assert results["global-holdout"].variant == "on"  # QA is never held out
    lead = evaluator.evaluate({"user_id": "u-1", "email": "qa-lead@shopwell.example"})
    assert lead["checkout-surface"].variant == "slot-1"  # pinned through the cohort
