"""Target `amplitude`: Amplitude's own evaluation engine (from the `amplitude-experiment`
package, a test dependency) gives every user the same variant as expc's evaluator, except
in the differences docs/amplitude.md lists, each pinned by a vector in
tests/cases/amplitude/vectors.yaml."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import CASES, REPO, compiled_bundle
from ruamel.yaml import YAML

from expc import cli
from expc.outputs.bundle_types import Bundle
from expc.outputs.targets import amplitude
from expc.outputs.targets.amplitude import ExportError, export, to_dnf
from expc.sdk.conditions import as_number, as_version
from expc.sdk.evaluate import Evaluator

engine_module = pytest.importorskip("amplitude_experiment.evaluation.engine")
types_module = pytest.importorskip("amplitude_experiment.evaluation.types")

USERS = 100_000
AMPLITUDE_CASES = CASES / "amplitude"
DOCS = REPO / "docs" / "amplitude.md"

# Hostile values, each drawn now and then instead of an ordinary one.
ODD_IDS: list[Any] = [
    True,
    False,
    '["qa-anna"]',
    '["qa-chen", "x"]',
    "[1, 2]",
    12345,
    1.5,
    "true",
    "True",
    "qa-anna\n",
    "(none)",
]
ODD_EMAILS = [
    "dev@shopwell.example\n",
    "dev@shopwell.example\r\n",
    "dev@shopwell.example\r",
    "dev@shopwell.example\u2028",
    "dev@shopwell.example\u2029",
    "dev@shopwell.example\x85",
    "dev@shopwell.example\x0b",
    "dev@shopwell.example\x0c",
    "dev@shopwell.example\n\n",
    "x\ndev@shopwell.example",
    "DEV@SHOPWELL.EXAMPLE",
    "dev@shopwell-example",
    "dev@shopwell.example.com",
    "@shopwell.example",
    "(none)",
]
ODD_NUMBERS: list[Any] = [
    "6 days",
    "0x5",
    "-inf",
    "inf",
    "nan",
    "1e0",
    "6.5",
    6.5,
    7.0,
    1e-7,
    " 5",
    "5\n",
    "x\n5",
    "\uff15",
    "5_0",
    "+5",
    ".5",
    "5.",
    "006",
    "6.99999999999999999",
    "-1e400",
    True,
    False,
    0,
    "0",
    "[3]",
]
ODD_VERSIONS: list[Any] = [
    "latest",
    "5.x",
    "5.2.0.1",
    "10",
    "v5.2.0",
    "5.2",
    "5.2.0-beta",
    "5.2.0+build",
    "5.2.0-",
    "\uff16.0.0",
    "5.10.1-rc.1",
    "5.2.0\n",
    "6.0.0\u2028",
    5.2,
    6,
    6.0,
    True,
]
ODD_TEXTS: list[Any] = ["true", "True", "TRUE", True, False, "", "NO\n", "no", "(none)"]


def pick(rng: random.Random, ordinary: list[Any], odd: list[Any], odd_share: float) -> Any:
    return rng.choice(odd if rng.random() < odd_share else ordinary)


def random_user(rng: random.Random, index: int) -> dict[str, Any]:
    ids = [f"user-{index}", f"u{index}@x", "qa-anna", "qa-chen"]
    user: dict[str, Any] = {"user_id": pick(rng, ids, ODD_IDS, 0.02)}
    if rng.random() < 0.8:
        user["country"] = pick(rng, ["NO", "SE", "DK", "DE", "US", "FI"], ODD_TEXTS, 0.02)
    if rng.random() < 0.7:
        user["platform"] = pick(rng, ["ios", "android", "web"], ODD_TEXTS, 0.02)
    if rng.random() < 0.6:
        user["app_version"] = pick(rng, ["5.1.9", "5.2.0", "5.10.1", "6.0.0"], ODD_VERSIONS, 0.2)
    if rng.random() < 0.5:
        user["account_age_days"] = pick(rng, list(range(1, 31)), ODD_NUMBERS, 0.2)
    if rng.random() < 0.5:
        user["plan"] = pick(rng, ["free", "pro"], ODD_TEXTS, 0.02)
    if rng.random() < 0.1:
        user["email"] = pick(rng, ["dev@shopwell.example", "someone@example.com"], ODD_EMAILS, 0.5)
    return user


def random_case_user(rng: random.Random, index: int) -> dict[str, Any]:
    """A user for tests/cases/amplitude/definitions, which read a few more attributes."""
    user = random_user(rng, index)
    if rng.random() < 0.5:
        odd = [False, "True", "TRUE", "1", "true\n"]
        user["beta"] = pick(rng, [True, "true", "false"], odd, 0.1)
    if rng.random() < 0.5:
        user["campaign"] = rng.choice(["instagram", "IN", "tiktok", "x\ninsta", "in", "nan"])
    if rng.random() < 0.5:
        user["coupon"] = rng.choice(["SPRING25", "spring25", "a SPRING", "SPR\nING", "#SPRING"])
    if rng.random() < 0.5:
        user["gift_note"] = pick(rng, ["(none)", "thanks", "0", "\n"], ["", False, 0, []], 0.05)
    return user


def difference_classes(user: dict[str, Any], compared_with_true: str = "") -> set[str]:
    """The documented differences (docs/amplitude.md) a user's values fall into."""
    classes: set[str] = set()
    if isinstance(user.get("user_id"), bool) or user.get(compared_with_true) == "True":
        classes.add("python-booleans")
    for value in user.values():
        if value is not None and not value:
            classes.add("falsy-values")
        if isinstance(value, str) and value.startswith("["):
            try:
                if isinstance(json.loads(value), list):
                    classes.add("list-text")
            except ValueError:
                pass
        if isinstance(value, list | dict) and value:
            classes.add("list-values")
        if isinstance(value, float) and not math.isfinite(value):
            classes.add("non-finite-floats")
    return classes


def amplitude_context(user: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in user.items() if k != "user_id"}
    context: dict[str, Any] = {"user_properties": properties}
    if "user_id" in user:
        context["user_id"] = user["user_id"]
    return {"user": context}


class BothEngines:
    """expc's evaluator on a bundle and Amplitude's engine on its export, side by side."""

    def __init__(self, bundle: Bundle) -> None:
        self.evaluator = Evaluator(bundle)
        self.flags = [types_module.EvaluationFlag.from_dict(f) for f in export(bundle)["flags"]]
        self.engine = engine_module.EvaluationEngine()

    def variants(self, user: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        ours = {key: result.variant for key, result in self.evaluator.evaluate(user).items()}
        raw = self.engine.evaluate(amplitude_context(user), self.flags)
        theirs = {
            key: raw[key].key if key in raw and raw[key].key != "off" else None for key in ours
        }
        return ours, theirs


def compare_random_users(
    engines: BothEngines, users: Any, compared_with_true: str = ""
) -> tuple[int, Counter[str]]:
    """Enrolments, and how many users in each documented difference disagreed. Fails
    on the first few disagreements outside the documented differences."""
    disagreements: list[tuple[dict[str, Any], dict[str, Any]]] = []
    excused: Counter[str] = Counter()
    enrolled = 0
    for user in users:
        ours, theirs = engines.variants(user)
        enrolled += sum(v is not None for v in ours.values())
        if ours == theirs:
            continue
        classes = difference_classes(user, compared_with_true)
        if classes:
            excused.update(sorted(classes))
            excused["users"] += 1
        elif len(disagreements) < 5:
            disagreements.append(
                (user, {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]})
            )
    assert disagreements == []
    return enrolled, excused


def example_in_plain_text(tmp_path: Path) -> Path:
    """The example's definitions without `private_attributes`: Amplitude compares raw
    values, so only a project that keeps them in plain text can be exported."""
    definitions = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", definitions)
    project = definitions / "project.yaml"
    text = project.read_text(encoding="utf-8")
    plain = "\n".join(
        line for line in text.splitlines() if not line.startswith("private_attributes:")
    )
    assert plain != text.rstrip("\n")
    project.write_text(plain + "\n", encoding="utf-8")
    return definitions


def test_amplitude_engine_agrees_with_expc_for_100000_users(tmp_path: Path) -> None:
    engines = BothEngines(compiled_bundle(example_in_plain_text(tmp_path)))
    rng = random.Random(20261125)
    enrolled, excused = compare_random_users(
        engines, (random_user(rng, index) for index in range(USERS))
    )
    # Only users in a documented difference may disagree, and exactly this many do:
    # the exception cannot grow unnoticed.
    assert excused == {
        "users": 730,
        "falsy-values": 274,
        "list-text": 285,
        "python-booleans": 368,
    }
    assert enrolled > USERS * 3  # the comparison is about real enrolments, not all "off"


def test_amplitude_engine_agrees_on_the_operator_cases_for_20000_users() -> None:
    # tests/cases/amplitude/definitions hold the negations (not_in_cohort on numbers,
    # versions and ends_with), booleans, contains and exists that the example lacks.
    engines = BothEngines(compiled_bundle(AMPLITUDE_CASES / "definitions"))
    rng = random.Random(8)
    enrolled, excused = compare_random_users(
        engines, (random_case_user(rng, index) for index in range(20_000)), "beta"
    )
    assert excused == {
        "users": 980,
        "falsy-values": 647,
        "list-text": 118,
        "python-booleans": 274,
    }
    assert enrolled > 20_000 * 3  # the comparison is about real enrolments, not all "off"


def load_vectors() -> dict[str, list[dict[str, Any]]]:
    document: dict[str, list[dict[str, Any]]] = YAML(typ="safe", pure=True).load(
        (AMPLITUDE_CASES / "vectors.yaml").read_text(encoding="utf-8")
    )
    return document


@pytest.fixture(scope="module")
def case_engines() -> BothEngines:
    return BothEngines(compiled_bundle(AMPLITUDE_CASES / "definitions"))


VECTORS = load_vectors()


@pytest.mark.parametrize("vector", VECTORS["differences"], ids=lambda v: v["class"])
def test_documented_difference(vector: dict[str, Any], case_engines: BothEngines) -> None:
    ours, theirs = case_engines.variants(vector["user"])
    flag = vector["flag"]
    assert (ours[flag], theirs[flag]) == (vector["expc"], vector["amplitude"])
    assert vector["expc"] != vector["amplitude"]


@pytest.mark.parametrize("vector", VECTORS["agreements"], ids=lambda v: v["flag"])
def test_hostile_input_agrees(vector: dict[str, Any], case_engines: BothEngines) -> None:
    ours, theirs = case_engines.variants(vector["user"])
    flag = vector["flag"]
    assert (ours[flag], theirs[flag]) == (vector["variant"], vector["variant"])


def test_every_difference_is_documented_with_a_vector() -> None:
    documented = re.findall(r"^### `([a-z-]+)`", DOCS.read_text(encoding="utf-8"), re.MULTILINE)
    pinned = {vector["class"] for vector in VECTORS["differences"]} | {"python-engine-errors"}
    assert sorted(documented) == sorted(pinned)


def test_python_engine_errors(case_engines: BothEngines) -> None:
    # `python-engine-errors`: Amplitude's engine cannot hash text with an unpaired
    # surrogate, nor read an integer too long for str(); expc answers both.
    for user in ({"user_id": "u-\ud800"}, {"user_id": "u-1", "account_age_days": 10**5000}):
        assert case_engines.evaluator.evaluate(user)["checkout-test"].variant is not None
        with pytest.raises((UnicodeEncodeError, ValueError)):
            case_engines.engine.evaluate(amplitude_context(user), case_engines.flags)


def test_compile_writes_the_target_on_request(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    definitions = str(AMPLITUDE_CASES / "definitions")

    def compile_with(target: str) -> int:
        return cli.main(["compile", definitions, "--out", str(out), "--target", target])

    assert compile_with("amplitude") == 0
    assert (out / "amplitude" / "flags.json").is_file()
    assert compile_with("optimizely") == 2
    assert "unknown target 'optimizely'" in capsys.readouterr().err


def leaf(op: str, *values: str, attribute: str = "a") -> dict[str, Any]:
    return {"attribute": attribute, "op": op, "values": list(values)}


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            leaf("version_gte", "5.2.0-beta.2"),
            r"exp-1: 'version_gte' against '5.2.0-beta.2'.*write a release such as 5.2.0",
        ),
        (leaf("version_lt", "10"), r"exp-1: 'version_lt' against '10', which is not a version"),
        (leaf("gt", "Infinity"), r"exp-1: 'gt' against 'Infinity'.*write digits"),
        (leaf("in", "NO", "(none)"), r"exp-1: the value '\(none\)' means 'missing'.*exists"),
        (leaf("is", '["a"]'), r"exp-1: the value '\[\"a\"\]' reads as a JSON list"),
        (leaf("ends_with", "@x\n"), r"exp-1: the 'ends_with' value '@x\\n' holds a control"),
        (leaf("contains", "a\tb"), r"exp-1: the 'contains' value 'a\\tb' holds a control"),
        (leaf("in", "true", "x\n"), r"exp-1: a value with a control character.*true/false"),
    ],
)
def test_what_amplitude_cannot_express_is_refused_by_name(
    condition: dict[str, Any], message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        to_dnf({"all": [condition]}, "exp-1")
    with pytest.raises(ExportError, match=message):
        to_dnf({"none": [condition]}, "exp-1")


def test_a_variant_named_off_is_refused() -> None:
    bundle = compiled_bundle(CASES / "evaluate" / "prerequisites" / "definitions")
    flag = {**bundle["flags"][0], "variants": [{"key": "off", "range": [0, 42949673]}]}
    with pytest.raises(ExportError, match=r"new-search: the variant key 'off'.*rename"):
        amplitude.export_flag(flag)  # type: ignore[arg-type]


def test_an_inexpressible_target_fails_the_compile_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definitions = tmp_path / "definitions"
    shutil.copytree(CASES / "evaluate" / "prerequisites" / "definitions", definitions)
    (definitions / "project.yaml").write_text(
        "kind: project\nkey: project\ntargets: [amplitude]\n", encoding="utf-8"
    )
    search = definitions / "new-search.yaml"
    search.write_text(
        search.read_text(encoding="utf-8")
        + "targeting:\n  all:\n"
        + "    - {attribute: app_version, op: version_gte, values: ['6.0.0-rc.1']}\n",
        encoding="utf-8",
    )
    assert cli.main(["compile", str(definitions)]) == cli.EXIT_FINDINGS
    assert "new-search: 'version_gte' against '6.0.0-rc.1'" in capsys.readouterr().err
    assert not (tmp_path / "generated").exists()


def test_negations_keep_expc_meaning_for_a_missing_attribute() -> None:
    # `none` of a number comparison: a missing attribute, a value that is not a number,
    # or a number on the other side; each a term of its own.
    terms = to_dnf({"none": [leaf("lt", "7")]}, "exp-1")
    assert [[(c["op"], c["values"]) for c in term] for term in terms] == [
        [("is", ["(none)"]), ("less", ["(none)"])],
        [("regex does not match", [amplitude.NUMBER])],
        [("regex match", [amplitude.HAS_LINE_BREAK])],
        [("greater or equal", ["7"])],
    ]


def test_dnf_of_nested_groups() -> None:
    tree = {
        "all": [
            {"any": [leaf("is", "1", attribute="a"), leaf("is", "2", attribute="b")]},
            leaf("exists", attribute="c"),
        ]
    }
    terms = to_dnf(tree, "f")
    assert [[c["selector"][-1] for c in term] for term in terms] == [["a", "c"], ["b", "c"]]


def test_project_targets_are_written_on_every_compile(tmp_path: Any) -> None:
    case = CASES / "evaluate" / "prerequisites" / "definitions"
    shutil.copytree(case, tmp_path / "definitions")
    (tmp_path / "definitions" / "project.yaml").write_text(
        "kind: project\nkey: project\ntargets: [amplitude]\n"
    )
    assert cli.main(["compile", str(tmp_path / "definitions")]) == 0
    assert (tmp_path / "generated" / "amplitude" / "flags.json").is_file()


# --- the patterns in the other SDKs' regex dialects ---------------------------------

DIALECT_VALUES = [
    *ODD_EMAILS,
    "dev@shopwell.example",
    "dev@shopwell.example\nmore",
    "instagram",
    "x\ninstagram",
    "IN",
    "SPRING",
    "a SPRING\nb",
    "#spring",
    *(v for v in ODD_NUMBERS + ODD_VERSIONS if isinstance(v, str)),
    "5",
    "-1.5e3",
    "5.2.0",
    "5.2.0-rc.1",
    "x\n5.2.0",
    "",
]


def dialect_cases() -> dict[str, tuple[list[str], list[str], Any]]:
    """name -> (patterns that must match, patterns that must not, expc's own test)."""

    def exported(condition: dict[str, Any]) -> tuple[list[str], list[str]]:
        (term,) = to_dnf(condition, "f")
        regexes = [c for c in term if c["op"].startswith("regex")]
        return (
            [c["values"][0] for c in regexes if c["op"] == "regex match"],
            [c["values"][0] for c in regexes if c["op"] == "regex does not match"],
        )

    return {
        "ends_with": (
            *exported(leaf("ends_with", "@shopwell.example")),
            lambda v: v.endswith("@shopwell.example"),
        ),
        "starts_with": (*exported(leaf("starts_with", "in")), lambda v: v.startswith("in")),
        "contains": (*exported(leaf("contains", "SPRING")), lambda v: "SPRING" in v),
        "contains #": (*exported(leaf("contains", "#s")), lambda v: "#s" in v),
        "number": (*exported(leaf("lt", "7")), lambda v: as_number(v) is not None),
        "version": (*exported(leaf("version_gt", "1.0")), lambda v: as_version(v) is not None),
        "exists": (*exported(leaf("exists")), lambda v: True),
    }


def javascript_matches(patterns: list[str], values: list[str]) -> dict[str, list[bool]]:
    """Amplitude's JavaScript SDK: `new RegExp(pattern).exec(value)`, no flags."""
    script = (
        "const d = JSON.parse(require('fs').readFileSync(0, 'utf8')); const out = {};"
        "for (const p of d.p) {"
        "  const r = new RegExp(p); out[p] = d.v.map(v => r.exec(v) !== null);"
        "}"
        "process.stdout.write(JSON.stringify(out));"
    )
    document = json.dumps({"p": patterns, "v": values})
    done = subprocess.run(
        ["node", "-e", script], input=document, capture_output=True, text=True, check=True
    )
    matched: dict[str, list[bool]] = json.loads(done.stdout)
    return matched


KOTLIN = """
import java.nio.charset.StandardCharsets; import java.nio.file.*; import java.util.*;
import java.util.regex.Pattern;
public class Whole {
  // Amplitude's Kotlin SDKs: Regex(pattern).matches(value), a match of the whole value.
  public static void main(String[] args) throws Exception {
    List<String> lines = Files.readAllLines(Paths.get(args[0]));
    int patterns = Integer.parseInt(lines.get(0));
    StringBuilder out = new StringBuilder();
    for (int i = 1; i <= patterns; i++) {
      Pattern pattern = Pattern.compile(text(lines.get(i)));
      for (String value : lines.subList(patterns + 1, lines.size()))
        out.append(pattern.matcher(text(value)).matches() ? '1' : '0');
      out.append('\\n');
    }
    System.out.print(out);
  }
  static String text(String hex) {
    byte[] bytes = new byte[hex.length() / 2];
    for (int i = 0; i < bytes.length; i++)
      bytes[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
    return new String(bytes, StandardCharsets.UTF_8);
  }
}
"""


def kotlin_matches(patterns: list[str], values: list[str], work: Path) -> dict[str, list[bool]]:
    (work / "Whole.java").write_text(KOTLIN, encoding="utf-8")
    subprocess.run(["javac", "Whole.java"], cwd=work, check=True, capture_output=True)
    lines = [str(len(patterns)), *(p.encode().hex() for p in patterns)]
    lines += [v.encode().hex() for v in values]
    (work / "input.txt").write_text("\n".join(lines) + "\n", encoding="ascii")
    done = subprocess.run(
        ["java", "-cp", str(work), "Whole", str(work / "input.txt")],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = done.stdout.splitlines()
    return {p: [c == "1" for c in rows[i]] for i, p in enumerate(patterns)}


@pytest.mark.skipif(
    not (shutil.which("node") and shutil.which("javac") and shutil.which("java")),
    reason="needs node and a JDK",
)
def test_patterns_mean_the_same_in_javascript_and_kotlin(tmp_path: Path) -> None:
    cases = dialect_cases()
    patterns = sorted({p for must, must_not, _ in cases.values() for p in must + must_not})
    dialects = {
        "python": {p: [re.search(p, v) is not None for v in DIALECT_VALUES] for p in patterns},
        "javascript": javascript_matches(patterns, DIALECT_VALUES),
        "kotlin": kotlin_matches(patterns, DIALECT_VALUES, tmp_path),
    }
    wrong = [
        (dialect, name, value)
        for name, (must, must_not, expected) in cases.items()
        for dialect, matched in dialects.items()
        for index, value in enumerate(DIALECT_VALUES)
        if (all(matched[p][index] for p in must) and not any(matched[p][index] for p in must_not))
        != expected(value)
    ]
    assert wrong == []
