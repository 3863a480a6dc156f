"""How definition files are read: YAML 1.2 (`NO`, `yes`, `on` and `off` are strings, not
booleans), exact numbers, and the limits on what a file may be (depth, characters, tags,
size, links, names), each a located error rather than a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import CASES, REPO, valid_snapshot

from expc.outputs.release import bundle_of
from expc.pipeline.snapshot import read
from expc.reading.listing import MAX_FILE_BYTES
from expc.reading.source import SourceFile
from expc.reading.yaml_values import MAX_DEPTH, SourceError
from expc.render import diagnostic_text
from expc.sdk.evaluate import Evaluator


def test_country_codes_and_variant_names_stay_strings() -> None:
    snapshot = valid_snapshot(CASES / "yaml" / "nordic-countries" / "definitions")
    assert snapshot.diagnostics == ()
    flag = bundle_of(snapshot)["flags"][0]
    assert flag["targeting"] == {
        "all": [
            {"attribute": "country", "op": "in", "values": ["NO", "SE"]},
            {"attribute": "newsletter", "op": "is", "values": ["yes"]},
        ]
    }
    assert [variant["key"] for variant in flag["variants"]] == ["off", "on"]


def test_core_schema_scalars() -> None:
    source = SourceFile(
        "x.yaml",
        "a: true\nb: 010\nc: 2.50\nd: ~\ne: '5'\nf: 0x1F\ng: Yes\nh: 1e2\n",
    )
    assert source.parse() == {
        "a": True,
        "b": 10,
        "c": Decimal("2.50"),
        "d": None,
        "e": "5",
        "f": 31,
        "g": "Yes",
        "h": Decimal("1e2"),
    }


def test_locate_points_at_values_and_keys() -> None:
    source = SourceFile("x.yaml", "kind: mutex\nslots:\n  - percent: 5\n    group: g\n")
    assert source.locate(("slots", 0, "group")) == (4, 12)
    assert source.locate(("slots", 0, "group"), key=True) == (4, 5)
    # pydantic's union tags in a location are skipped, not followed.
    assert source.locate(("slots", "function-after[x]", 0, "percent")) == (3, 14)


def test_tags_quotes_and_aliases() -> None:
    source = SourceFile(
        "x.yaml",
        "a: !!str 5\nb: ! 5\nc: '010'\nd: &shared [1, 2]\ne: *shared\nf: !!int '7'\n",
    )
    assert source.parse() == {"a": "5", "b": "5", "c": "010", "d": [1, 2], "e": [1, 2], "f": 7}


def test_reading_problems_are_located_errors() -> None:
    problems = {
        "a: *nowhere\n": ("E001", 1, 4),
        "? [a, b]\n: c\n": ("E001", 1, 3),
        "a: .inf\n": ("E103", 1, 4),
        "a: 1\nb: 2\na: 3\n": ("E002", 3, 1),
        "- a\n": ("E003", 1, 1),
        "---\n...\n": ("E006", 1, 1),
    }
    for text, (code, line, column) in problems.items():
        with pytest.raises(SourceError) as raised:
            SourceFile("x.yaml", text).parse()
        assert (raised.value.code.id, raised.value.line, raised.value.column) == (
            code,
            line,
            column,
        ), text


def _error(text: str) -> tuple[str, int, int, str]:
    with pytest.raises(SourceError) as raised:
        SourceFile("x.yaml", text).parse()
    error = raised.value
    return error.code.id, error.line, error.column, error.message


def test_definitions_at_the_nesting_limit_compile_and_evaluate() -> None:
    # Every stage that walks values (pydantic, the bundle, the evaluator) copes with
    # the deepest values the reader lets through.
    snapshot = valid_snapshot(CASES / "yaml" / "deep-at-the-limit" / "definitions")
    assert snapshot.diagnostics == ()
    evaluator = Evaluator.from_compiled(bundle_of(snapshot))
    results = evaluator.evaluate({"user_id": "u-1", "country": "NO"})
    assert results["deep-targeting"].reason == "bucketed"
    assert evaluator.evaluate({"user_id": "u-1"}, "deep-targeting").reason == "targeting"
    payload = next(
        v["payload"]
        for v in bundle_of(snapshot)["flags"][0]["variants"]
        if v["payload"] is not None
    )
    depth = 0
    while isinstance(payload, dict):
        payload, depth = payload["level"], depth + 1
    assert depth == MAX_DEPTH - 3  # under the document, `variants` and the variant


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        # flow lists and mappings: the n-th bracket opens level n + 1
        ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", 1, 4 + (MAX_DEPTH - 1)),
        ("a: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n", 1, 4 + 4 * (MAX_DEPTH - 1)),
        # a block list that opens one level deeper on every line, from line 2
        (
            "a:\n" + "".join("  " * i + "- \n" for i in range(1, 200)),
            MAX_DEPTH + 1,
            2 * MAX_DEPTH + 1,
        ),
    ],
    ids=["list-100000-deep", "mapping-1000-deep", "block-list-200-deep"],
)
def test_nesting_past_the_limit_is_refused_where_it_crosses(
    text: str, line: int, column: int
) -> None:
    code, found_line, found_column, message = _error(text)
    assert (code, found_line, found_column) == ("E010", line, column)
    assert f"more than {MAX_DEPTH} levels" in message


def test_aliases_count_as_deep_as_what_they_repeat() -> None:
    anchored = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    at_limit = f"a: &x {anchored}\nb: [*x]\n"
    assert SourceFile("x.yaml", at_limit).parse()["b"][0] is not None
    code, line, column, message = _error(f"a: &x {anchored}\nb: [[*x]]\n")
    assert (code, line, column) == ("E010", 2, 6)
    assert "through alias *x" in message


def test_positions_are_never_composed_from_text_past_the_limits() -> None:
    # ruamel's composer recurses in C once per level: a deep text that did not pass
    # through `parse` would crash the process, so `locate` answers (1, 1) instead.
    script = (
        "from expc.reading.source import SourceFile\n"
        "text = 'a: ' + '[' * 30000 + ']' * 30000 + '\\n'\n"
        "print(*SourceFile('x.yaml', text).locate(('a', 0)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "1 1\n")


@pytest.mark.parametrize(
    ("text", "line", "column", "character"),
    [
        ("kind: cohort\nkey: a\nname: x\x00y\n", 3, 8, "U+0000 (NUL)"),
        ("kind: cohort\r\nkey: a\r\nname: 'ü\x1b'\r\n", 3, 9, "U+001B"),
        ("# \x7f\nkey: a\n", 1, 3, "U+007F"),
        ("key: a\nname: \x9b\n", 2, 7, "U+009B"),
        ("key: a\nname: \U0001f600\ufffe\n", 2, 8, "character U+FFFE"),
    ],
    ids=["nul", "escape-after-crlf-and-umlaut", "delete-in-comment", "c1", "noncharacter"],
)
def test_characters_yaml_forbids_are_located_and_named(
    text: str, line: int, column: int, character: str
) -> None:
    code, found_line, found_column, message = _error(text)
    assert (code, found_line, found_column) == ("E011", line, column)
    assert character in message and "delete it" in message


def test_tags_on_mappings_and_lists_are_refused() -> None:
    assert _error("a: !!python/object:os.system {b: 1}\n")[:3] == ("E008", 1, 4)
    assert _error("a:\n  - x\nb: !whatever [a]\n")[:3] == ("E008", 3, 4)
    assert _error("a: !!set {b: null}\n")[:3] == ("E008", 1, 4)
    assert "'!!python/object:os.system'" in _error("a: !!python/object:os.system [1]\n")[3]
    # The core tags of the right kind, and `!`, are what they say.
    text = "a: !!map {b: !!seq [1]}\nc: ! [2]\nd: !<tag:yaml.org,2002:seq> [3]\n"
    assert SourceFile("x.yaml", text).parse() == {"a": {"b": [1]}, "c": [2], "d": [3]}


def test_odd_numbers_are_exact_values_or_located_errors() -> None:
    text = (
        "a: !!int 0x1F\nb: !!float 5\nc: 1_000\nd: 0o17\ne: 0x\nf: -0\ng: 1e400\n"
        + "h: 0."
        + "0" * 4000
        + "1\n"
    )
    assert SourceFile("x.yaml", text).parse() == {
        "a": 31,
        "b": Decimal(5),
        "c": "1_000",
        "d": 15,
        "e": "0x",
        "f": 0,
        "g": Decimal("1e400"),
        "h": Decimal("0." + "0" * 4000 + "1"),
    }
    too_long = [
        "a: 1e99999999999999999999\n",  # past what Decimal holds
        "a: 1e999999999\n",  # a gigabyte of digits when written out
        "a: 1e-5000\n",
        "a: " + "9" * 4301 + "\n",
        "a: 0x" + "f" * 4000 + "\n",
        "a: !!int " + "9" * 5000 + "\n",
    ]
    for text in too_long:
        code, line, column, message = _error(text)
        assert (code, line, column) == ("E103", 1, 4), text[:30]
        assert "4300 digits" in message
    assert _error("a: !!float .nan\n")[:2] == ("E103", 1)
    assert _error("a: !!float nan\n")[0] == "E001"  # not a core-schema float
    code, _line, _column, message = _error("a: !!int " + "x" * 100 + "\n")
    assert code == "E001" and len(message) < 80


def _tree(tmp_path: Path) -> Path:
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "beta.yaml").write_text("kind: cohort\nkey: beta\nusers: [u-1]\n")
    return definitions


def _messages(definitions: Path) -> list[str]:
    return [diagnostic_text(d) for d in read(definitions, "definitions").diagnostics]


def test_links_inside_the_definitions_are_read_as_their_target(tmp_path: Path) -> None:
    definitions = _tree(tmp_path)
    drafts = definitions / ".drafts"  # hidden: read only through the link
    drafts.mkdir()
    (drafts / "alpha.yaml").write_text("kind: cohort\nkey: alpha\nusers: [u-2]\n")
    (definitions / "alpha.yaml").symlink_to(".drafts/alpha.yaml")
    # A folder link that stays inside is not followed: its files are read once, where
    # they are, rather than twice (or forever, for a link to a parent).
    (definitions / "again").symlink_to(".")
    snapshot = valid_snapshot(definitions)
    assert snapshot.diagnostics == ()
    assert sorted(snapshot.objects) == ["alpha", "beta"]


def test_links_that_lead_nowhere_or_in_circles_are_unreadable(tmp_path: Path) -> None:
    definitions = _tree(tmp_path)
    (definitions / "dangling.yaml").symlink_to("missing.yaml")
    (definitions / "circle.yaml").symlink_to("circle.yaml")
    assert _messages(definitions) == [
        "definitions/circle.yaml:1:1: error[E009 unreadable-file] cannot read the file: "
        "Too many levels of symbolic links",
        "definitions/dangling.yaml:1:1: error[E009 unreadable-file] cannot read the file: "
        "No such file or directory",
    ]


def test_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    definitions = _tree(tmp_path)
    os.mkfifo(definitions / "pipe.yaml")
    assert _messages(definitions) == [
        "definitions/pipe.yaml:1:1: error[E009 unreadable-file] not a regular file (a pipe, "
        "socket or device); definitions are plain files"
    ]


def test_folders_nest_deeper_than_python_recurses(tmp_path: Path) -> None:
    definitions = _tree(tmp_path)
    folders = [definitions]
    for _ in range(1200):
        folders.append(folders[-1] / "d")
        folders[-1].mkdir()
    deepest = folders[-1] / "deep.yaml"
    deepest.write_text("kind: cohort\nkey: deep\nusers: [u-3]\n")
    try:
        assert sorted(valid_snapshot(definitions).objects) == ["beta", "deep"]
    finally:  # pytest's own clean-up of tmp_path recurses once per folder
        deepest.unlink()
        for folder in reversed(folders[1:]):
            folder.rmdir()


def _validate(definitions: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "expc", "validate", "definitions"],
        cwd=definitions.parent,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )


def test_huge_files_of_deep_nesting_are_refused_quickly(tmp_path: Path) -> None:
    # 50 MB is refused by its size, before it is read; a file just under the size
    # limit by its depth, where reading stops. Neither may crash or take long (about
    # 0.4 s each on a 2-core machine, measured with /usr/bin/time; not asserted).
    definitions = _tree(tmp_path)
    head = "kind: cohort\nkey: {}\nusers: "
    (definitions / "huge.yaml").write_text(head.format("huge") + "[" * 50_000_000 + "\n")
    under = MAX_FILE_BYTES - len(head) - 10
    (definitions / "large.yaml").write_text(head.format("large") + "[" * under + "\n")
    result = _validate(definitions)
    assert result.returncode == 1
    assert result.stderr.splitlines()[:2] == [
        "definitions/huge.yaml:1:1: error[E009 unreadable-file] the file is larger than "
        "10 MiB, the most a definition may be; move it out of the definitions directory, "
        "or split a large cohort into several",
        f"definitions/large.yaml:3:{7 + MAX_DEPTH}: error[E010 too-deep] mappings and lists "
        f"nest more than {MAX_DEPTH} levels deep here; definitions need about ten: flatten "
        "this value (a deep payload can be a JSON string instead)",
    ]


def test_too_many_values_blames_aliases_only_when_there_are_some() -> None:
    flat = "users: [" + "u, " * 100_000 + "u]\n"
    code, _line, _column, message = _error(flat)
    assert code == "E005" and message.startswith("the file holds more than 100000 values")
    aliased = "a: &a [" + "u, " * 999 + "u]\nb: [" + "*a, " * 100 + "*a]\n"
    code, _line, _column, message = _error(aliased)
    assert code == "E005" and message.startswith("anchors and aliases expand")
