"""The Python SDK as an application uses it: loading, results and reasons, odd input,
swapping bundles under load, and the DESIGN §4 guarantees as properties."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import mmh3
import pytest
from conftest import CASES, REPO, compiled_bundle, valid_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from expc.outputs.release import bundle_of
from expc.sdk.bucketing import POINTS, basis_points, boundary, hash_value, point
from expc.sdk.evaluate import BundleError, Evaluator, content_id_of, parse_bundle

BUNDLE = REPO / "generated" / "production" / "bundle.json"


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator.load(BUNDLE)


def _first_user(test: Any, prefix: str = "user") -> str:
    return next(f"{prefix}-{i}" for i in range(100_000) if test(f"{prefix}-{i}"))


def test_the_sdk_imports_only_the_standard_library_and_mmh3() -> None:
    code = (
        "import sys, expc.sdk, expc.sdk.conditions, expc.sdk.bucketing, expc.sdk.evaluate, "
        "expc.sdk.poller, expc.sdk.exposures, expc.sdk.sinks; "
        "heavy = {'pydantic', 'networkx', 'jinja2', 'ruamel', 'numpy', 'typing_extensions', "
        "'openfeature'} & {m.split('.')[0] for m in sys.modules}; "
        "compiler = sorted(m for m in sys.modules if m.startswith('expc.') "
        "and not m.startswith('expc.sdk')); print(sorted(heavy), compiler)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[] []"


def test_importing_the_sdk_package_loads_nothing_until_a_name_is_used() -> None:
    code = "import sys, expc.sdk; print(sorted(m for m in sys.modules if m.startswith('expc.')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "['expc.sdk']"


# Besides the standard library and mmh3, the one module that may import each package,
# and the modules that use them, which only these may import.
THIRD_PARTY = {"numpy": {"batch.py", "batch_murmur.py"}, "openfeature": {"openfeature.py"}}
HEAVY_MODULES: dict[str, set[str]] = {
    "expc.sdk.openfeature": set(),
    "expc.sdk.batch": set(),
    "expc.sdk.batch_murmur": {"batch.py"},
}


def test_sdk_modules_import_only_what_they_may() -> None:
    """The runtime SDK stands alone: an application can vendor compiler/sdk/ by itself.
    numpy is for the batch path, openfeature-sdk for the provider, and no module imports
    those two (so that the evaluator never needs either)."""
    import ast

    standard = sys.stdlib_module_names
    for path in sorted((REPO / "compiler" / "sdk").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        ] + [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        ]
        for module in imported:
            top = module.split(".")[0]
            if top == "expc":
                assert module.startswith("expc.sdk"), f"{path.name} imports {module}"
                allowed = HEAVY_MODULES.get(module, {path.name})
                assert path.name in allowed, f"{path.name} imports {module}"
            elif top not in standard and top != "mmh3":
                assert path.name in THIRD_PARTY.get(top, set()), f"{path.name} imports {module}"


def test_loads_from_path_bytes_text_and_dict() -> None:
    raw = BUNDLE.read_bytes()
    keys = Evaluator.load(BUNDLE).flag_keys
    assert Evaluator(raw).flag_keys == keys
    assert Evaluator(raw.decode()).flag_keys == keys
    assert Evaluator(json.loads(raw)).flag_keys == keys
    assert len(keys) == 21


def test_refuses_unknown_major_version_and_altered_content() -> None:
    document = json.loads(BUNDLE.read_bytes())
    with pytest.raises(BundleError, match=r"schema version 3\.0 is not supported"):
        Evaluator({**document, "schema_version": "3.0"})
    first = document["flags"][0]
    first["traffic"] = 99 if first["traffic"] == 100 else 100  # altered after compiling
    with pytest.raises(BundleError, match="content id mismatch"):
        Evaluator(document)
    with pytest.raises(BundleError, match="cannot read the bundle"):
        Evaluator(b"{not json")


def test_holdout_reason_for_every_covered_experiment(evaluator: Evaluator) -> None:
    held_below = boundary(basis_points(5))
    user = _first_user(lambda u: point(hash_value("global-holdout", u)) < held_below)
    results = evaluator.evaluate({"user_id": user})
    assert results["global-holdout"].variant == "holdout"
    for key in ("checkout-one-page", "checkout-apple-pay-first", "search-typo-tolerance"):
        assert (results[key].variant, results[key].reason) == (None, "holdout:global-holdout")
    # Not covered by the global holdout: unaffected.
    assert results["pricing-usd-rounding"].reason == "rollout"


def test_mutex_reason_names_the_group_whose_slot_failed(evaluator: Evaluator) -> None:
    def in_slot_3_not_held(u: str) -> bool:
        held = point(hash_value("global-holdout", u)) < boundary(500)
        slot = point(hash_value("checkout-surface", u))
        return not held and boundary(5000) <= slot < boundary(10000)

    results = evaluator.evaluate({"user_id": _first_user(in_slot_3_not_held)})
    assert results["checkout-surface"].variant == "slot-3"
    assert results["checkout-one-page"].reason == "mutex:checkout-surface"
    inner = results["checkout-payment-methods"].variant
    apple = results["checkout-apple-pay-first"]
    if inner == "slot-1":
        assert apple.reason == "targeting"  # no platform attribute
    else:
        assert apple.reason == "mutex:checkout-payment-methods"


def test_overrides_pins_and_exclusions(evaluator: Evaluator) -> None:
    anna = evaluator.evaluate({"user_id": "qa-anna"})
    assert (anna["checkout-one-page"].variant, anna["checkout-one-page"].reason) == (
        "one-page",
        "override",
    )
    assert anna["checkout-one-page"].payload == {"layout": "single", "steps": 1}
    assert anna["checkout-surface"].reason == "override"  # QA pinned to slot 1
    assert anna["global-holdout"].variant == "on"  # QA never held out
    employee = evaluator.evaluate(
        {"user_id": "someone", "is_employee": True}, "checkout-address-autocomplete"
    )
    assert (employee.variant, employee.reason) == ("autocomplete", "override")


def test_targeting_traffic_and_bucketing(evaluator: Evaluator) -> None:
    key = "checkout-address-autocomplete"
    assert evaluator.evaluate({"user_id": "u-1", "country": "DE"}, key).reason == "targeting"
    outside = _first_user(lambda u: hash_value(key, u) % 100 >= 20)
    assert evaluator.evaluate({"user_id": outside, "country": "NO"}, key).reason == "traffic"
    inside = _first_user(lambda u: hash_value(key, u) % 100 < 20)
    result = evaluator.evaluate({"user_id": inside, "country": "SE"}, key)
    expected = "control" if point(hash_value(key, inside)) < boundary(5000) else "autocomplete"
    assert (result.variant, result.reason) == (expected, "bucketed")


def test_not_running_and_missing_bucketing_value(evaluator: Evaluator) -> None:
    assert evaluator.evaluate({"user_id": "u-1"}, "pricing-tier-names").reason == "not-running"
    for user in ({}, {"user_id": ""}, {"user_id": None}, {"user_id": ["a"]}):
        assert evaluator.evaluate(user, "search-typo-tolerance").reason == "no-bucketing-value"
    # A rollout needs no bucketing.
    assert evaluator.evaluate({}, "pricing-usd-rounding").variant == "round-99"


def test_prerequisite_reason() -> None:
    snapshot = valid_snapshot(CASES / "evaluate" / "prerequisites" / "definitions")
    evaluator = Evaluator(bundle_of(snapshot))
    control = _first_user(lambda u: point(hash_value("new-search", u)) < boundary(5000))
    result = evaluator.evaluate({"user_id": control}, "search-filters")
    assert (result.variant, result.reason) == (None, "prerequisite:new-search")
    treated = _first_user(lambda u: point(hash_value("new-search", u)) >= boundary(5000))
    assert evaluator.evaluate({"user_id": treated}, "search-filters").reason == "bucketed"


odd_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=50)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
attribute_names = st.sampled_from(
    ["user_id", "country", "email", "platform", "app_version", "account_age_days", "plan"]
) | st.text(max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(attribute_names, odd_values, max_size=6) | odd_values)
def test_never_raises_on_odd_input(user: Any) -> None:
    evaluator = Evaluator.load(BUNDLE)
    results = evaluator.evaluate(user)
    assert list(results) == evaluator.flag_keys


def test_huge_and_unicode_ids_hash_like_the_spec() -> None:
    snapshot = valid_snapshot(CASES / "evaluate" / "prerequisites" / "definitions")
    evaluator = Evaluator(bundle_of(snapshot))
    for user_id in ("x" * 1_000_000, "用户-7", "🎉", "a/b"):
        h = hash_value("new-search", user_id)
        expected = "control" if point(h) < boundary(5000) else "treatment"
        assert evaluator.evaluate({"user_id": user_id}, "new-search").variant == expected


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_design_guarantees_hold_for_any_user(user_id: str) -> None:
    evaluator = Evaluator.load(BUNDLE)
    results = evaluator.evaluate({"user_id": user_id, "country": "NO", "platform": "ios"})
    groups = {
        "checkout-surface": [
            "checkout-one-page",
            "checkout-express-pay",
            "checkout-apple-pay-first",
            "checkout-bnpl-banner",
        ],
        "search-ranking": ["search-typo-tolerance", "search-semantic-ranker"],
        "onboarding-flow": ["onboarding-pricing-preview", "onboarding-checklist"],
    }
    for members in groups.values():
        assert sum(results[m].variant is not None for m in members) <= 1
    if results["global-holdout"].variant == "holdout":
        assert all(
            results[m].variant is None
            for m in groups["checkout-surface"] + groups["search-ranking"]
        )


def test_raising_traffic_only_adds_users(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    target = (
        tmp_path / "definitions" / "experiments" / "checkout" / "checkout-address-autocomplete.yaml"
    )
    before = Evaluator(compiled_bundle(tmp_path / "definitions"))
    target.write_text(target.read_text().replace("traffic: 20", "traffic: 60"))
    after = Evaluator(compiled_bundle(tmp_path / "definitions"))
    key = "checkout-address-autocomplete"
    gained = 0
    for i in range(3000):
        user = {"user_id": f"u-{i}", "country": "NO"}
        old, new = before.evaluate(user, key), after.evaluate(user, key)
        if old.variant is not None:
            assert new.variant == old.variant
        gained += old.variant is None and new.variant is not None
    assert gained > 1000


def test_swap_under_load_never_mixes_bundles(tmp_path: Path) -> None:
    first = json.loads(BUNDLE.read_bytes())
    second = compiled_bundle(CASES / "evaluate" / "prerequisites" / "definitions")
    evaluator = Evaluator(first)
    shapes = {tuple(Evaluator(first).flag_keys), tuple(Evaluator(dict(second)).flag_keys)}
    seen: set[tuple[str, ...]] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def evaluate_forever() -> None:
        try:
            while not stop.is_set():
                seen.add(tuple(evaluator.evaluate({"user_id": "u-1"})))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=evaluate_forever) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    swaps = 0
    while swaps < 200 or (len(seen) < 2 and time.monotonic() < deadline):
        evaluator.swap(dict(second) if swaps % 2 else first)
        swaps += 1
        time.sleep(0.0005)  # let the evaluating threads run between swaps
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen <= shapes and len(seen) == 2


# --- odd and hostile input (issue 8) ------------------------------------------------


def _same(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """The same Result object for every flag: the two users are one user to the bundle."""
    return list(first) == list(second) and all(first[k] is second[k] for k in first)


def test_ids_with_surrogates_hash_as_a_javascript_text_encoder_writes_them(
    evaluator: Evaluator,
) -> None:
    # JSON's "\ud800" is a lone surrogate in a Python str; TextEncoder writes it as U+FFFD.
    assert hash_value("s", "a\ud800") == mmh3.hash(b"s/a\xef\xbf\xbd", 0, False)
    # A pair held as two code points is the character it encodes.
    assert hash_value("s", "\ud83d\ude00") == mmh3.hash("s/\U0001f600".encode(), 0, False)
    for odd, plain in (
        ("\ud800", "\ufffd"),
        ("u-\udc00-7", "u-\ufffd-7"),
        ("\ude00\ud83d", "\ufffd\ufffd"),
        ("smile-\ud83d\ude00", "smile-\U0001f600"),
        ("é\udbff", "é\ufffd"),
    ):
        assert _same(evaluator.evaluate({"user_id": odd}), evaluator.evaluate({"user_id": plain}))
        for key in ("search-typo-tolerance", "checkout-one-page"):
            assert (
                evaluator.explain({"user_id": odd}, key)[1]
                == (evaluator.explain({"user_id": plain}, key)[1])
            )


def test_eval_command_survives_a_lone_surrogate_in_the_user_id() -> None:
    # mmh3 5.3.1 crashed the process (SIGSEGV) on a lone surrogate.
    run = subprocess.run(
        [
            *(sys.executable, "-m", "expc", "eval", '{"user_id": "\\ud800"}'),
            *("--bundle", str(BUNDLE), "--flag", "search-typo-tolerance", "--explain"),
        ],
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert run.returncode == 0, run.stderr
    assert "murmur3('search-typo-tolerance/\ufffd')" in run.stdout.decode("utf-8")


def test_integers_too_long_to_write_count_as_missing(evaluator: Evaluator) -> None:
    nobody = evaluator.evaluate({})
    assert _same(evaluator.evaluate({"user_id": 10**5000}), nobody)
    assert _same(evaluator.evaluate({"user_id": -(10**4300)}), nobody)  # 4,301 digits
    # 4,300 digits still have their text.
    assert _same(
        evaluator.evaluate({"user_id": 10**4300 - 1}), evaluator.evaluate({"user_id": "9" * 4300})
    )
    # In a condition too: `country` in [NO, SE] fails as for a missing country.
    key = "checkout-address-autocomplete"
    assert evaluator.evaluate({"user_id": "u-1", "country": 10**5000}, key).reason == "targeting"


def test_results_do_not_depend_on_the_interpreters_digit_limit(evaluator: Evaluator) -> None:
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # an application may lower it; results must not move
    try:
        lowered = evaluator.evaluate({"user_id": 10**700})
    finally:
        sys.set_int_max_str_digits(limit)
    assert _same(lowered, evaluator.evaluate({"user_id": "1" + "0" * 700}))


def test_nan_infinity_and_bytes_count_as_missing_numbers_as_their_text(
    evaluator: Evaluator,
) -> None:
    nobody = evaluator.evaluate({})
    for value in (float("nan"), float("inf"), -float("inf"), Decimal("NaN"), b"u-1"):
        assert _same(evaluator.evaluate({"user_id": value}), nobody), value
    assert _same(evaluator.evaluate({"user_id": 12345}), evaluator.evaluate({"user_id": "12345"}))
    assert _same(evaluator.evaluate({"user_id": True}), evaluator.evaluate({"user_id": "true"}))


def test_subclasses_are_read_as_their_base_type_without_calling_their_methods(
    evaluator: Evaluator,
) -> None:
    class Id(str):
        def __str__(self) -> str:
            raise RuntimeError("never called")

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("never called")

        __hash__ = str.__hash__

    class Number(int):
        def __repr__(self) -> str:
            return "not the number"

        __str__ = __repr__

    class Attributes(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            return {"user_id": Id("qa-anna")}.get(key, default)

    anna = evaluator.evaluate({"user_id": "qa-anna"})
    assert _same(evaluator.evaluate({"user_id": Id("qa-anna")}), anna)
    assert _same(evaluator.evaluate(Attributes()), anna)
    assert _same(evaluator.evaluate({"user_id": Number(42)}), evaluator.evaluate({"user_id": "42"}))


def test_attributes_that_cannot_be_read_count_as_missing(evaluator: Evaluator) -> None:
    class Broken(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("broken")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("broken")

        def __len__(self) -> int:
            raise RuntimeError("broken")

    class NoClass:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise RuntimeError("no class")

    for user in (Broken(), NoClass(), {"user_id": NoClass()}):
        results = evaluator.evaluate(user)
        assert list(results) == evaluator.flag_keys
        assert results["search-typo-tolerance"].reason == "no-bucketing-value"
        assert results["pricing-usd-rounding"].reason == "rollout"


# --- hostile bundles: BundleError and nothing else ---------------------------------


def _signed(change: Callable[[dict[str, Any]], Any]) -> str:
    """The example bundle with `change` applied, its content id recomputed to match, as
    JSON text (\\u escapes for surrogates): it passes the content id check."""
    document = json.loads(BUNDLE.read_bytes())
    change(document)
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate has no content id
        document["release"]["content_id"] = content_id_of(document)
    return json.dumps(document)


def _flag(document: dict[str, Any], key: str = "checkout-address-autocomplete") -> Any:
    return next(flag for flag in document["flags"] if flag["key"] == key)


def _nested(depth: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"attribute": "country", "op": "is", "values": ["NO"]}
    for _ in range(depth):
        condition = {"all": [condition]}
    return condition


HOSTILE_BUNDLES: dict[str, Callable[[], Any]] = {
    "deeply nested JSON": lambda: b"[" * 100_000 + b"]" * 100_000,
    "deeply nested objects": lambda: '{"a":' * 50_000 + "1" + "}" * 50_000,
    "a 5000-digit number": lambda: '{"schema_version": 1' + "0" * 5000 + "}",
    "NaN": lambda: b'{"schema_version": NaN}',
    "not UTF-8": lambda: b'{"schema_version": "\xff"}',
    "a lone surrogate in a salt": lambda: _signed(
        lambda d: _flag(d)["bucketing"].update(salt="salt-\ud800")
    ),
    "a lone surrogate in a key": lambda: _signed(lambda d: _flag(d).update(key="\udc00")),
    "a lone surrogate in a value": lambda: _signed(
        lambda d: _flag(d)["targeting"]["all"][0].update(values=["\ud83d"])
    ),
    "schema version as a number": lambda: _signed(lambda d: d.update(schema_version=1)),
    "content id as a number": lambda: {
        **json.loads(BUNDLE.read_bytes()),
        "release": {"content_id": 7},
    },
    "flags not a list": lambda: _signed(lambda d: d.update(flags={"a": 1})),
    "a flag that is text": lambda: _signed(lambda d: d["flags"].insert(0, "flag")),
    "a key that is a number": lambda: _signed(lambda d: _flag(d).update(key=5)),
    "bucketing by a list": lambda: _signed(lambda d: _flag(d)["bucketing"].update(by=["user_id"])),
    "serving as text": lambda: _signed(lambda d: _flag(d).update(serving="yes")),
    "traffic as text": lambda: _signed(lambda d: _flag(d).update(traffic="20")),
    "traffic as a float": lambda: _signed(lambda d: _flag(d).update(traffic=20.0)),
    "traffic as true": lambda: _signed(lambda d: _flag(d).update(traffic=True)),
    "traffic over 100": lambda: _signed(lambda d: _flag(d).update(traffic=101)),
    "variants not a list": lambda: _signed(lambda d: _flag(d).update(variants={})),
    "a range of text": lambda: _signed(lambda d: _flag(d)["variants"][0].update(range=[0, "9"])),
    "a range of floats": lambda: _signed(
        lambda d: _flag(d)["variants"][0].update(range=[0.0, 9.5])
    ),
    "a range of three": lambda: _signed(lambda d: _flag(d)["variants"][0].update(range=[0, 1, 2])),
    "a reversed range": lambda: _signed(lambda d: _flag(d)["variants"][0].update(range=[9, 0])),
    "a range past the last point": lambda: _signed(
        lambda d: _flag(d)["variants"][1]["range"].__setitem__(1, POINTS + 1)
    ),
    "overlapping ranges": lambda: _signed(
        lambda d: _flag(d)["variants"][1]["range"].__setitem__(0, 100)
    ),
    "two variants with one name": lambda: _signed(
        lambda d: _flag(d)["variants"][1].update(key="control")
    ),
    "an override to an unknown variant": lambda: _signed(
        lambda d: _flag(d)["overrides"]["users"].update({"u-1": "nope"})
    ),
    "overrides.users a list": lambda: _signed(
        lambda d: _flag(d)["overrides"].update(users=["u-1"])
    ),
    "a rollout of an unknown variant": lambda: _signed(lambda d: _flag(d).update(rollout="nope")),
    "a rollout that is a list": lambda: _signed(lambda d: _flag(d).update(rollout=["control"])),
    "requires a later flag": lambda: _signed(
        lambda d: _flag(d).update(
            requires=[{"flag": "search-typo-tolerance", "variants": [], "reason": "x"}]
        )
    ),
    "requires an unknown flag": lambda: _signed(
        lambda d: _flag(d).update(requires=[{"flag": "nope", "variants": [], "reason": "x"}])
    ),
    "an unknown operator": lambda: _signed(
        lambda d: _flag(d)["targeting"]["all"][0].update(op="version_between")
    ),
    "condition values that are numbers": lambda: _signed(
        lambda d: _flag(d)["targeting"]["all"][0].update(values=[1, 2])
    ),
    "a comparison without a value": lambda: _signed(
        lambda d: _flag(d)["targeting"]["all"][0].update(op="gte", values=[])
    ),
    "a pattern re refuses": lambda: _signed(
        lambda d: _flag(d)["targeting"]["all"][0].update(op="matches", values=["(unclosed"])
    ),
    "conditions nested 200 deep": lambda: _signed(
        lambda d: _flag(d).update(targeting=_nested(200))
    ),
    "two flags with one key": lambda: _signed(lambda d: d["flags"].append(_flag(d))),
    "a number": lambda: 42,
    "a list": lambda: "[1, 2]",
    "None": lambda: None,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BUNDLES))
def test_hostile_bundles_raise_bundle_error_and_nothing_else(name: str, tmp_path: Path) -> None:
    source = HOSTILE_BUNDLES[name]()
    with contextlib.suppress(BundleError):  # refusing is right; anything else is not
        parse_bundle(source)
    with pytest.raises(BundleError):
        Evaluator(source)
    path = tmp_path / "bundle.json"
    path.write_bytes(source if isinstance(source, bytes) else str(source).encode())
    with pytest.raises(BundleError):
        Evaluator.load(path)
    serving = Evaluator.load(BUNDLE)
    with pytest.raises(BundleError):
        serving.swap(source)
    assert serving.evaluate({"user_id": "qa-anna"}, "checkout-one-page").reason == "override"


def test_a_lone_surrogate_in_a_bundle_is_named_in_the_error() -> None:
    with pytest.raises(BundleError, match="not Unicode"):
        Evaluator(HOSTILE_BUNDLES["a lone surrogate in a key"]())
    compiled = json.loads(HOSTILE_BUNDLES["a lone surrogate in a salt"]())
    with pytest.raises(BundleError, match="salt is not Unicode"):
        Evaluator.from_compiled(compiled)  # not verified, still refused: mmh3 would crash


def test_hostile_sources_raise_bundle_error(tmp_path: Path) -> None:
    class Broken(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("broken")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("broken")

        def __len__(self) -> int:
            return 1

    for source in (Broken(), object(), tmp_path, tmp_path / "missing.json"):
        with pytest.raises(BundleError):
            Evaluator(source)  # type: ignore[arg-type]
        with pytest.raises(BundleError):
            parse_bundle(source)  # type: ignore[arg-type]
    with pytest.raises(BundleError):
        Evaluator.load(12345)  # type: ignore[arg-type]


def test_error_messages_show_hostile_text_escaped_and_short() -> None:
    document = json.loads(BUNDLE.read_bytes())
    document["release"]["content_id"] = "forged\n\x1b[2J" + "x" * 10_000
    with pytest.raises(BundleError) as refused:
        Evaluator(document)
    message = str(refused.value)
    assert message.isprintable() and len(message) < 400
    assert "forged\\n\\x1b[2J" in message


def test_update_replaces_the_bundle_only_when_its_content_id_differs() -> None:
    evaluator = Evaluator.load(BUNDLE)
    prepared = evaluator.prepared_flags
    assert evaluator.update(BUNDLE.read_bytes()) is False
    assert evaluator.prepared_flags is prepared
    other = compiled_bundle(CASES / "evaluate" / "prerequisites" / "definitions")
    assert evaluator.update(dict(other)) is True
    assert evaluator.flag_keys == ["new-search", "search-filters"]
    with pytest.raises(BundleError):
        evaluator.update(b"{")
    assert evaluator.flag_keys == ["new-search", "search-filters"]
